"""botocore's data files (service models, endpoint rules), parsed once per machine and user.

Every command makes its AWS clients anew, and botocore parses each client's model from its
gzipped JSON into OrderedDicts: an S3, an EC2 and an ELBv2 client took ~100 ms of CPU, the
largest part of a command's start after its imports. Here each file's parsed form is kept as
a pickle, under the user's own cache directory (0700), named by the file's path, size and
mtime: an upgraded botocore reads its new files, and the objects are the same types botocore
made (58 ms instead of 100 for those three clients, n=4).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from botocore.exceptions import DataNotFoundError
from botocore.loaders import JSONFileLoader, Loader, instance_cache


def cache_dir() -> Path:
    """Honours XDG_CACHE_HOME, like ~/.cache/pip."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dynoform" / "botocore"


def trusted(directory: Path) -> bool:
    """Only the user's own directory, writable by no one else: a pickle runs code as it loads."""
    try:
        stat = directory.stat()
    except FileNotFoundError:
        return True  # made 0700 on the first store
    except OSError:
        return False
    return stat.st_uid == os.getuid() and not stat.st_mode & 0o022


class CachedJSONFileLoader(JSONFileLoader):
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.enabled = trusted(directory)

    def _load_file(self, full_path: str, open_method: Callable[..., IO[bytes]]) -> Any:
        if not self.enabled:
            return super()._load_file(full_path, open_method)
        try:
            stat = os.stat(full_path)
        except OSError:
            return None  # as botocore: this extension is not there, try the next
        name = f"{full_path}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()
        cached = self.directory / hashlib.sha256(name).hexdigest()
        try:
            with cached.open("rb") as handle:
                return pickle.load(handle)
        except (OSError, EOFError, pickle.UnpicklingError):
            pass
        data = super()._load_file(full_path, open_method)
        if data is not None:
            self._store(cached, data)
        return data

    def _store(self, path: Path, data: Any) -> None:
        """Written whole or not at all; a cache that cannot be written costs only speed."""
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
            with tmp.open("wb") as handle:
                pickle.dump(data, handle, protocol=pickle.HIGHEST_PROTOCOL)
            tmp.replace(path)
        except OSError:
            pass


class ModelLoader(Loader):
    """botocore's Loader, but a model's service is looked up alone, not among them all.

    Loader.load_service_model first lists every service botocore knows, to check that the
    one asked for is among them: ~400 directories listed and ~5,000 files looked for, ~7 ms a
    model type (service-2, endpoint-rule-set-1, paginators-1), ~20 ms of every command before
    its first AWS call. A service is among them exactly when one of its API versions has the
    file (what list_api_versions finds); an unknown one still gets botocore's own error.
    """

    @instance_cache
    def load_service_model(
        self, service_name: str, type_name: str, api_version: str | None = None
    ) -> Any:
        try:
            self.list_api_versions(service_name, type_name)
        except DataNotFoundError:  # unknown: botocore's lookup and its UnknownServiceError
            return super().load_service_model(service_name, type_name, api_version)
        if api_version is None:
            api_version = self.determine_latest_version(service_name, type_name)
        model = self.load_data(os.path.join(service_name, api_version, type_name))
        extras = self._find_extras(service_name, type_name, api_version)
        self._extras_processor.process(model, extras)
        return model


def loader(directory: Path | None = None) -> Loader:
    """A botocore data loader reading through the cache."""
    return ModelLoader(file_loader=CachedJSONFileLoader(directory or cache_dir()))
