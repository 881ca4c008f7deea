"""Which cloud a host runs in, from local DMI data only (never a metadata service), and what that
means for Layer 2 DR. Pure; shared by the Linux and Windows platforms.

Layer 2 DR cannot work in an AWS VPC (no ARP for secondary addresses, source/destination check);
Google's guest agent already routes forwarded load-balancer IPs locally (guest-agent#555); Azure
load balancers do DSR as "Floating IP". Facts carry `dmi`: on Linux the files under
/sys/class/dmi/id and /sys/hypervisor/uuid, on Windows the same values from Win32_ComputerSystem
(Manufacturer, Model) and Win32_SystemEnclosure (SMBIOSAssetTag), under the Linux names.
"""

from __future__ import annotations

from typing import Any

from arpfix.model import Finding
from arpfix.settings import Host

# Azure's chassis asset tag: cloud-init cloudinit/sources/azure/identity.py (ChassisAssetTag.AZURE_CLOUD); a
# Hyper-V guest on premises has the same vendor and product but not this tag. GCE: product_name "Google
# Compute Engine"; EC2: sys_vendor "Amazon EC2" (Nitro) or a hypervisor/product uuid starting "ec2" (Xen),
# as cloud-init's tools/ds-identify reads them.
AZURE_ASSET_TAG = "7783-7084-3265-9085-8269-3286-77"


def detect_cloud(facts: dict[str, Any], host: Host) -> tuple[str, str]:
    """(cloud, evidence): "aws" | "gcp" | "azure" | "none", from the inventory or the host's DMI data."""
    if host.cloud != "auto":
        return host.cloud, f"cloud: {host.cloud} (inventory)"
    dmi = facts.get("dmi", {})
    vendor, product, bios = dmi.get("sys_vendor", ""), dmi.get("product_name", ""), dmi.get("bios_vendor", "")
    if "Amazon EC2" in (vendor, bios) or dmi.get("uuid", "").lower().startswith("ec2") \
            or "amazon" in dmi.get("bios_version", "").lower():
        return "aws", f"DMI: {vendor or bios or dmi.get('uuid')}"
    if vendor == "Google" or product == "Google Compute Engine":
        return "gcp", f"DMI: {product or vendor}"
    if dmi.get("chassis_asset_tag") == AZURE_ASSET_TAG:
        return "azure", "DMI: Azure chassis asset tag"
    return "none", ""


def cloud_findings(facts: dict[str, Any], host: Host) -> list[Finding]:
    cloud, evidence = detect_cloud(facts, host)
    if cloud == "aws":
        return [Finding("cloud", False, "Layer 2 segment", f"AWS ({evidence})",
                        "Layer 2 DR does not work in an AWS VPC (no ARP for secondary addresses, source/destination "
                        "check)", source=evidence,
                        fix="use a NAT or proxy mode of the load balancer (or an NLB); set `cloud: none` if this host "
                            "is not in a VPC")]
    if cloud == "gcp":
        return [Finding("cloud", False, None, f"Google Cloud ({evidence})",
                        "Google's guest agent already adds local routes for forwarded load-balancer IPs", source=evidence,
                        severity="warning", fix="check that the VIP is not also routed locally by the guest agent "
                                                "(ip route show table local)")]
    if cloud == "azure":
        return [Finding("cloud", False, None, f"Azure ({evidence})",
                        "Azure load balancers do direct server return as Floating IP", source=evidence, severity="warning",
                        fix="enable Floating IP on the load-balancing rule; the VIP stays on the loopback")]
    return []
