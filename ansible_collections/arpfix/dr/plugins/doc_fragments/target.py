"""The options every arpfix.dr module shares: which host, which VIPs."""


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  inventory:
    description:
      - An arpfix inventory file (arpfix YAML or an Ansible inventory, as C(arpfix -i) reads).
      - The task's host is looked up in it by its inventory name (or O(host)); its VIPs, services,
        method and profile come from there. Its C(ssh) and C(winrm) settings are not used; the
        scripts travel over the task's Ansible connection.
      - Relative paths are relative to the playbook's folder.
      - Mutually exclusive with O(vips), O(profiles), O(platform), O(address), O(method), O(nic),
        O(windows_profile), O(keep_bindings).
    type: path
  host:
    description: The host's name in O(inventory). Default is C(inventory_hostname).
    type: str
  vips:
    description:
      - The VIPs this host is a real server for, each as in an arpfix inventory's C(vips) list
        (C(name), C(address), C(services) and/or C(profile), C(affinity)), without C(real_servers);
        the task's host is the real server.
      - Checked by arpfix's own validator (full-match names, addresses that may be VIPs, ports).
    type: list
    elements: dict
  profiles:
    description: Named service lists the VIPs may refer to with C(profile), as in an arpfix inventory.
    type: dict
  platform:
    description: C(linux) or C(windows). Default is C(windows) over a winrm or psrp connection, else C(linux).
    type: str
    choices: [linux, windows]
  address:
    description:
      - The host's own address (its RIP).
      - Default is the host's C(arpfix_address), else C(ansible_host) when that is an IP address.
    type: str
  method:
    description: "Linux: how the VIP is held: C(loopback) (default), C(host-scope), C(dummy) or C(redirect)."
    type: str
  nic:
    description: The Linux interface or Windows adapter facing the load balancer (normally found from the address).
    type: str
  windows_profile:
    description: "Windows: C(loadbalancer.org) (default) or C(microsoft) (weak-host send on the NIC too)."
    type: str
  keep_bindings:
    description: "Windows: bindings kept on the loopback adapter, e.g. C([ms_msclient, ms_server]) for print servers."
    type: list
    elements: str
requirements:
  - the arpfix Python package on the controller (or in the execution environment)
notes:
  - An action plugin, which runs on the controller and sends one arpfix script per host over the task's
    connection (ssh, paramiko, winrm, psrp), with the task's become for Linux.
  - The host keeps arpfix's journal, so the C(arpfix) CLI can audit or roll back what the collection
    applied, and the other way round.
"""
