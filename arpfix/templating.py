"""Render the scripts that run remotely. Templates are dumb: values arrive validated and quoted.

Inside templates, `| sh` and `| ps` are the only ways to put a value into shell or PowerShell code
(they call arpfix.quoting); StrictUndefined turns a missing value into an error, not an empty word.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import Any

from arpfix.quoting import ps_quote, sh_quote


def data_dir(name: str) -> Path:
    """templates/ or inventory/: inside the installed package, else at the top of the checkout."""
    packaged = Path(__file__).parent / "_data" / name
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / name


@functools.lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_dir("templates"))),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["sh"] = sh_quote
    env.filters["ps"] = ps_quote
    from arpfix.platforms import linux_patterns
    from arpfix.platforms.linux import common as linux_common

    env.globals["patterns"] = linux_patterns  # constants shared by facts.sh.j2 and its parser
    env.globals["linux"] = linux_common  # arpfix's own file paths, read by facts.sh.j2 and change.sh.j2
    return env


_compile_lock = threading.Lock()
_cache_lock = threading.Lock()
_rendered: dict[tuple[str, tuple[tuple[str, Any], ...]], str] = {}  # render_cached


def render(template: str, **values: Any) -> str:
    """Render templates/<template> with values. Each template is compiled once, also when many
    worker threads ask for it at the same moment."""
    with _compile_lock:
        compiled = _environment().get_template(template)
    return str(compiled.render(**values))


def render_cached(template: str, **values: Any) -> str:
    """render() for a script that is the same for every host (values hashable): rendered once.
    Single-flight: worker threads asking at the same moment wait for the one rendering."""
    key = (template, tuple(sorted(values.items())))
    with _cache_lock:
        text = _rendered.get(key)
        if text is None:
            if len(_rendered) >= 64:
                _rendered.clear()
            text = _rendered[key] = render(template, **values)
    return text
