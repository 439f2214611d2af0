"""The default name under which one checkout keeps its keys in a shared Redis.

Its own module, free of settings, so ``devtools.run`` can say in its banner
the name the processes it starts will use.
"""

import hashlib
import re
from pathlib import Path

ALLOWED = re.compile(r"[A-Za-z0-9._-]+")


def checkout_prefix(base_dir: Path) -> str:
    """``feedback-<directory name>-<hash of the path>``: stable for a checkout,
    different for two checkouts, even two directories of the same name."""
    name = re.sub(r"[^a-z0-9]+", "-", base_dir.name.lower()).strip("-")[:24] or "app"
    return f"feedback-{name}-{hashlib.sha256(bytes(base_dir)).hexdigest()[:8]}"
