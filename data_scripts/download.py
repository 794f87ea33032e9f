#!/usr/bin/env python
"""Download the full official data sets for the deep experiments into the data directory.

    python data_scripts/download.py                      # all four data sets
    python data_scripts/download.py --dataset mnist --dataset cifar10
    python data_scripts/download.py --data-dir /big/disk/moecl-data

The data directory is ``--data-dir``, else ``$MOECL_DATA``, else ``~/.cache/moecl`` (the
rule of `moecl.data.resolve_data_dir`), and the files land where `moecl.data` reads them.

Every file is checked against the MD5 its publishers (MNIST, CIFAR) or the course that
hosts it (Tiny ImageNet, CS231n) give, as listed by torchvision and the data sets' pages:

* downloads go to ``<name>.part`` and are renamed to ``<name>`` only after the checksum
  matches, so an interrupted or corrupted download never looks complete;
* an interrupted download resumes from its ``.part`` file (HTTP Range request; a server
  that ignores the range makes it start over);
* files already present and verified are skipped; archives are unpacked into a
  temporary folder that is renamed into place when complete, with a marker file
  recording the verified archive, so a finished data set is skipped on the next run.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

#: Name of the file written inside an unpacked data set once it is complete.
MARKER = ".moecl-download-complete"
CHUNK = 1 << 20


class ChecksumError(ValueError):
    """A downloaded file's checksum differs from the published one."""


@dataclass(frozen=True)
class Resource:
    """One file to download: its name, the URLs to try in order, and its published MD5."""

    filename: str
    urls: tuple[str, ...]
    md5: str


@dataclass(frozen=True)
class DatasetSpec:
    """A data set: its files, and for an archive the folder it unpacks to.

    ``folder`` is where the files (``archive=False``) or the unpacked archive's top
    folder (``archive=True``) end up, relative to the data directory.
    """

    name: str
    description: str
    resources: tuple[Resource, ...]
    folder: str
    archive: bool


_MNIST_MIRRORS = ("http://yann.lecun.com/exdb/mnist/", "https://ossci-datasets.s3.amazonaws.com/mnist/")


def _mnist(filename: str, md5: str) -> Resource:
    return Resource(filename, tuple(base + filename for base in _MNIST_MIRRORS), md5)


#: The official files and their published MD5 checksums.
DATASETS = {
    "mnist": DatasetSpec(
        name="mnist",
        description="MNIST, 60,000 + 10,000 handwritten digits, IDX gzip (11 MiB)",
        resources=(
            _mnist("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            _mnist("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
            _mnist("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
            _mnist("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
        ),
        folder="mnist",
        archive=False,
    ),
    "cifar10": DatasetSpec(
        name="cifar10",
        description="CIFAR-10, python version (163 MiB)",
        resources=(Resource("cifar-10-python.tar.gz",
                            ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
                            "c58f30108f718f92721af3b95e74349a"),),
        folder="cifar-10-batches-py",
        archive=True,
    ),
    "cifar100": DatasetSpec(
        name="cifar100",
        description="CIFAR-100, python version (161 MiB)",
        resources=(Resource("cifar-100-python.tar.gz",
                            ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
                            "eb9058c3a382ffc7106e4002c42a8d85"),),
        folder="cifar-100-python",
        archive=True,
    ),
    "tiny-imagenet": DatasetSpec(
        name="tiny-imagenet",
        description="Tiny ImageNet, 200 classes of 64x64 images (237 MiB)",
        resources=(Resource("tiny-imagenet-200.zip",
                            ("http://cs231n.stanford.edu/tiny-imagenet-200.zip",),
                            "90528d7ca1a48142e341f4ef8d21d0de"),),
        folder="tiny-imagenet-200",
        archive=True,
    ),
}


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """``data_dir``, else ``$MOECL_DATA``, else ``~/.cache/moecl`` (as `moecl.data.resolve_data_dir`)."""
    try:
        from moecl.data import resolve_data_dir as resolve
    except ImportError:  # the script also runs without the package installed
        def resolve(path):
            return Path(path or os.environ.get("MOECL_DATA") or "~/.cache/moecl").expanduser()
    return resolve(data_dir)


def md5sum(path: Path) -> str:
    """Hex MD5 of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _progress(total: int | None, initial: int, label: str, quiet: bool):
    """A tqdm bar when tqdm is installed and output is wanted, else a do-nothing stand-in."""
    if not quiet:
        try:
            from tqdm import tqdm

            return tqdm(total=total, initial=initial, unit="B", unit_scale=True, desc=label, file=sys.stderr)
        except ImportError:
            pass

    class _Silent:
        def update(self, n):
            pass

        def close(self):
            pass

    return _Silent()


def fetch(url: str, part: Path, quiet: bool = False) -> None:
    """Download ``url`` into ``part``, resuming after the bytes ``part`` already holds.

    Sends an HTTP ``Range`` request when ``part`` is non-empty; if the server answers
    with the whole file instead (status other than 206, or a ``file://`` URL) the part is
    rewritten from the start. A 416 answer means the part is already complete.
    """
    start = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "moecl-data-download/1"}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60)
    except urllib.error.HTTPError as error:
        if error.code == 416 and start:
            return
        raise
    with response:
        if start and getattr(response, "status", None) != 206:
            start = 0
        length = response.headers.get("Content-Length")
        total = start + int(length) if length and length.isdigit() else None
        bar = _progress(total, start, part.name.removesuffix(".part"), quiet)
        try:
            with open(part, "ab" if start else "wb") as out:
                for block in iter(lambda: response.read(CHUNK), b""):
                    out.write(block)
                    bar.update(len(block))
        finally:
            bar.close()


def download_file(resource: Resource, folder: Path, quiet: bool = False) -> Path:
    """Make ``folder/resource.filename`` a verified copy of the resource and return its path.

    Skips a file that is already there with the right MD5. Otherwise tries each URL,
    writing to ``<name>.part`` (resumed if present) and renaming it to ``<name>`` only
    when its MD5 matches. A part whose checksum is wrong is deleted and the download
    retried once from scratch; if that fails too, `ChecksumError` is raised and nothing
    is left under the final name.
    """
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / resource.filename
    part = folder / (resource.filename + ".part")
    if target.exists():
        if md5sum(target) == resource.md5:
            log(f"{target}: present, MD5 verified, skipped", quiet)
            return target
        log(f"{target}: present but its MD5 is wrong; downloading again", quiet)
        target.unlink()
    errors = []
    for url in resource.urls:
        for attempt in range(2):
            try:
                log(f"{resource.filename}: {'resuming' if part.exists() else 'downloading'} from {url}", quiet)
                fetch(url, part, quiet)
            except (OSError, urllib.error.URLError) as error:
                errors.append(f"{url}: {error}")
                break  # keep the part for a later resume; try the next URL
            actual = md5sum(part)
            if actual == resource.md5:
                os.replace(part, target)
                log(f"{target}: MD5 verified", quiet)
                return target
            part.unlink()
            errors.append(f"{url}: MD5 {actual} differs from the published {resource.md5}")
            if attempt == 1:
                break
    if errors and all("MD5" in error for error in errors):
        raise ChecksumError(f"{resource.filename}: no download matched the published MD5:\n  " + "\n  ".join(errors))
    raise OSError(f"{resource.filename}: download failed:\n  " + "\n  ".join(errors))


def _safe_members(names: list[str], archive: Path, folder: str) -> None:
    """Refuse archives whose entries would land outside ``folder`` (path traversal)."""
    for name in names:
        parts = Path(name).parts
        if Path(name).is_absolute() or ".." in parts or (parts and parts[0] != folder):
            raise ValueError(f"{archive}: unexpected entry {name!r} outside {folder}/")


def extract(archive: Path, data_dir: Path, folder: str, md5: str) -> Path:
    """Unpack ``archive`` (tar.gz or zip) so that ``data_dir/folder`` appears complete or not at all.

    Unpacks into a temporary folder inside ``data_dir``, writes the marker file (with the
    archive's name and MD5) into the unpacked top folder, then renames it into place.
    """
    staging = Path(tempfile.mkdtemp(prefix=f".{folder}.unpacking-", dir=data_dir))
    try:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as handle:
                _safe_members(handle.namelist(), archive, folder)
                handle.extractall(staging)
        else:
            with tarfile.open(archive, "r:*") as handle:
                _safe_members(handle.getnames(), archive, folder)
                if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: refuse links and devices too
                    handle.extractall(staging, filter="data")
                else:  # pragma: no cover
                    handle.extractall(staging)
        unpacked = staging / folder
        if not unpacked.is_dir():
            raise ValueError(f"{archive}: has no top folder {folder}/")
        (unpacked / MARKER).write_text(f"{archive.name} {md5}\n")
        target = data_dir / folder
        if target.exists():  # only with --force: the old folder goes once the new one is complete
            shutil.rmtree(target)
        os.replace(unpacked, target)
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def is_complete(spec: DatasetSpec, data_dir: Path) -> bool:
    """Whether an archive data set was unpacked by this script from the verified archive."""
    marker = data_dir / spec.folder / MARKER
    expected = " ".join((spec.resources[0].filename, spec.resources[0].md5))
    return marker.is_file() and marker.read_text().strip() == expected


def download(spec: DatasetSpec, data_dir: Path, force: bool = False, keep_archive: bool = False,
             quiet: bool = False) -> Path:
    """Download, verify and (for archives) unpack one data set; return its folder."""
    data_dir.mkdir(parents=True, exist_ok=True)
    target = data_dir / spec.folder
    if not spec.archive:
        if force:
            for resource in spec.resources:
                (target / resource.filename).unlink(missing_ok=True)
        for resource in spec.resources:
            download_file(resource, target, quiet)
        return target
    if is_complete(spec, data_dir) and not force:
        log(f"{target}: present and verified ({MARKER}), skipped", quiet)
        return target
    if target.exists() and not force:
        raise FileExistsError(f"{target} exists but was not unpacked by this script from a verified "
                              f"archive; move it away or pass --force to replace it")
    (resource,) = spec.resources
    archive = download_file(resource, data_dir, quiet)
    log(f"{archive}: unpacking into {target}", quiet)
    extract(archive, data_dir, spec.folder, resource.md5)
    if not keep_archive:
        archive.unlink()
    return target


def log(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Download MNIST, CIFAR-10, CIFAR-100 and Tiny ImageNet from their official sources "
                    "into the moecl data directory, verifying the published MD5 checksums.",
        epilog="Data sets: " + "; ".join(f"{name}: {spec.description}" for name, spec in DATASETS.items()),
    )
    parser.add_argument("--dataset", action="append", choices=[*DATASETS, "all"], metavar="NAME",
                        help=f"data set to download ({', '.join(DATASETS)} or all); repeatable; default all")
    parser.add_argument("--data-dir", help="target directory (default: $MOECL_DATA, else ~/.cache/moecl)")
    parser.add_argument("--force", action="store_true", help="download and unpack again even if present")
    parser.add_argument("--keep-archive", action="store_true", help="keep the .tar.gz/.zip after unpacking")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or messages")
    args = parser.parse_args(argv)
    names = args.dataset or ["all"]
    names = list(DATASETS) if "all" in names else list(dict.fromkeys(names))
    data_dir = resolve_data_dir(args.data_dir)
    failures = 0
    for name in names:
        try:
            folder = download(DATASETS[name], data_dir, args.force, args.keep_archive, args.quiet)
            log(f"{name}: ready in {folder}", args.quiet)
        except (OSError, ValueError) as error:
            failures += 1
            print(f"{name}: FAILED: {error}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
