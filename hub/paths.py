"""Where the hub finds its schema files (contexts, shapes, codelists, examples).

The schemas live next to the code in the repository (``schemas/``), not inside the
package, because they are also published and edited as documents. A deployment that
installs the hub as a wheel points ``MELDHUB_SCHEMAS`` at its copy.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "MELDHUB_SCHEMAS"


def schemas_dir() -> Path:
    """The ``schemas/`` directory: ``$MELDHUB_SCHEMAS`` if set, else the repository's own."""
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override).expanduser().resolve()
    return Path(__file__).resolve().parents[1] / "schemas"


def context_dir() -> Path:
    return schemas_dir() / "context"


def shapes_file() -> Path:
    return schemas_dir() / "shapes" / "melding-shapes.ttl"


def codelists_dir() -> Path:
    return schemas_dir() / "codelists"


def examples_dir() -> Path:
    return schemas_dir() / "examples"
