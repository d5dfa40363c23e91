"""Writing files so that nothing half-written is ever taken for a whole one.

- `write_json`: a record written to a temporary file and renamed into place.
- `writing(path, intact)`: a full disk, a read-only folder or a missing
  permission while writing `path` becomes one `WriteError` that names the
  path and says what is still intact (the previous checkpoint, the published
  versions), instead of a traceback from deep inside h5py or TensorFlow.
- `new_run_dir`: a fresh run directory, never an existing one reused
  (here, not in `core.runs`, so that `recipes.launch` makes one without
  importing TensorFlow).
- `digest` / `manifest` / `check_manifest`: SHA-256 of a folder's files, so
  that a truncated or altered file is found before it is loaded.
"""

import contextlib
import datetime
import hashlib
import json
import os

MANIFEST = "manifest.json"


class WriteError(OSError):
    """A file could not be written; the message names it and what is intact."""

    def __str__(self):
        return self.strerror


def new_run_dir(runs_dir, recipe):
    """A fresh `runs_dir/recipe/<timestamp>[-n]/`; an existing one is never reused."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = os.path.join(runs_dir, recipe, stamp)
    for n in range(1, 1000):
        path = base if n == 1 else f"{base}-{n}"
        try:
            os.makedirs(path)
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a new run directory under {base}")


@contextlib.contextmanager
def writing(path, intact=""):
    """Turn an OSError raised inside into a `WriteError` about `path`."""
    try:
        yield
    except WriteError:
        raise
    except OSError as err:
        reason = os.strerror(err.errno) if err.errno else str(err)
        raise WriteError(err.errno, f"could not write {path}: {reason}"
                         + (f"; {intact}" if intact else "")) from err


def write_json(path, value):
    """Write JSON atomically (temporary file, then rename)."""
    tmp = path + ".tmp"
    with writing(path):
        try:
            with open(tmp, "w") as f:
                json.dump(value, f, indent=2, sort_keys=True, default=str)
                f.write("\n")
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)


def read_json(path):
    with open(path) as f:
        return json.load(f)


def digest(path):
    """The SHA-256 of a file, in hex."""
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def write_manifest(folder):
    """Record the SHA-256 of every file in `folder` in its `manifest.json` (written last)."""
    write_json(os.path.join(folder, MANIFEST), {
        name: digest(os.path.join(folder, name))
        for name in sorted(os.listdir(folder)) if name != MANIFEST})


def check_manifest(folder):
    """None if every file in `folder`'s manifest is there with its checksum, else why not."""
    try:
        expected = read_json(os.path.join(folder, MANIFEST))
    except FileNotFoundError:
        return f"no {MANIFEST}"
    except (OSError, ValueError) as err:
        return f"{MANIFEST} unreadable ({err})"
    for name, sha in expected.items():
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            return f"{name} is missing"
        if digest(path) != sha:
            return f"{name} fails its checksum (truncated or altered)"
    return None
