"""The cache folder, outside the source tree, of what is made from the data (<dataset>/trainval_idxs.json,
<dataset>/normalization/<trial>.json; image folders: ImageFolder/<folder>-<hash>/): where it is, and
writing a cache. Each cache is checked when read, so deleting the folder costs only the time to remake it."""
import json
import os
import sys

from core.errors import os_error_cause
from core.files import atomic_write

CACHE_ENV = "CAC_CACHE_DIR"


def resolve_cache_dir(given=None):
    """--cache_dir `given`, else $CAC_CACHE_DIR, else ${XDG_CACHE_HOME:-~/.cache}/cac (a relative
    XDG_CACHE_HOME is ignored, as the XDG specification says); read where arguments are parsed."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    user_cache = xdg if os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".cache")
    return given or os.environ.get(CACHE_ENV) or os.path.join(user_cache, "cac")


def write_cache(value, path):
    """`value` as JSON at `path`, all or nothing. A folder that cannot be written costs one
    warning, never the run: the cache is made again next time."""
    try:
        with atomic_write(path, "w") as f:
            json.dump(value, f)
    except OSError as e:
        print(f"warning: cannot write the cache {path} {os_error_cause(e, path)}; it is made again next time "
              f"(--cache_dir or {CACHE_ENV}: a writable folder)", file=sys.stderr)
