#!/usr/bin/env python
"""Download the full official data sets for the deep experiments into the data directory.

    python data_scripts/download.py                      # all four data sets
    python data_scripts/download.py --dataset mnist --dataset cifar10
    python data_scripts/download.py --data-dir /big/disk/moecl-data

The data directory is ``--data-dir``, else ``$MOECL_DATA``, else ``~/.cache/moecl`` (the
rule the package's loaders use), and the files land where the loaders read them.

Downloads go through `pooch` (``pip install 'moecl[data]'``): every file is fetched to a
temporary name next to its destination, checked against the MD5 its publishers give
(``DATASETS`` is the registry) and only then moved over the destination. Nothing present
is ever deleted before a verified replacement exists:

* a present file with the published MD5 is skipped; one whose MD5 differs is replaced
  only by a verified download, and kept, with a one-line message, when none can be had
  (offline, or every mirror serves something else);
* an archive is unpacked into a temporary folder that receives a marker file (the
  archive's name and MD5) and is then renamed into place. ``--force`` replaces an
  unpacked data set in three renames: the old folder steps aside, the new one moves
  in, the old one is deleted (its marker first); an error between the two renames
  moves the old folder back, and a run that finds a folder left aside by a killed
  run restores it before doing anything else;
* SIGINT and SIGTERM unwind like an error, so no temporary file or folder is left.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import signal
import sys
import tarfile
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

try:
    import pooch
except ImportError:  # main() says how to install it in one line
    pooch = None

#: Name of the file written inside an unpacked data set once it is complete.
MARKER = ".moecl-download-complete"
#: Prefixes of the hidden folders this script creates next to a data set folder.
UNPACKING, REPLACED = "unpacking-", "replaced-"


class ChecksumError(ValueError):
    """No download of a file matched its published checksum (nothing was written)."""


class KeptUnverified(OSError):
    """A present file's checksum differs from the published one and no verified copy could
    be downloaded: the file was kept as it is."""


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


#: The registry: the official files and their published MD5 checksums.
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
    """``data_dir``, else ``$MOECL_DATA``, else ``~/.cache/moecl`` (the loaders' rule)."""
    return Path(data_dir or os.environ.get("MOECL_DATA") or "~/.cache/moecl").expanduser()


def md5sum(path: Path) -> str:
    """Hex MD5 of a file."""
    return pooch.file_hash(str(path), alg="md5")


def log(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, file=sys.stderr)


def _reason(error: BaseException) -> str:
    """A short, one-line reason for a failed download (requests nests its causes deeply)."""
    status = getattr(getattr(error, "response", None), "status_code", None)
    if status:
        return f"HTTP {status}"
    text = " ".join(str(error).split())
    errno = re.search(r"\[Errno -?\d+\] [^'\")]+", text)
    return errno.group(0) if errno else (text[:160] or type(error).__name__)


def download_file(resource: Resource, folder: Path, quiet: bool = False, downloader=None) -> Path:
    """Make ``folder/resource.filename`` a verified copy of the resource and return its path.

    A present file with the published MD5 is skipped. Otherwise each URL is tried in turn
    with `pooch.retrieve`, which downloads to a temporary file in ``folder``, checks the
    MD5 and only then moves it over the destination (deleting the temporary file on any
    failure). If no URL gives a verified copy, a present file is kept as it is
    (`KeptUnverified`); with nothing present, nothing is written (`ChecksumError` when
    every URL served other bytes, else `OSError`).
    """
    target = folder / resource.filename
    present = target.is_file()
    if present:
        actual = md5sum(target)
        if actual == resource.md5:
            log(f"{target}: present, MD5 verified, skipped", quiet)
            return target
        log(f"{target}: MD5 {actual} differs from the published {resource.md5}; fetching a verified copy "
            f"(the present file stays until one is verified)", quiet)
    downloader = downloader or pooch.HTTPDownloader(progressbar=not quiet, chunk_size=1 << 20, timeout=60,
                                                    headers={"User-Agent": "moecl-data-download/2"})
    errors, mismatches = [], 0
    for url in resource.urls:
        log(f"{resource.filename}: downloading from {url}", quiet)
        try:
            pooch.retrieve(url, known_hash=f"md5:{resource.md5}", fname=resource.filename, path=folder,
                           downloader=downloader)
        except ValueError as error:  # pooch's hash mismatch; it deleted its temporary file
            mismatches += 1
            served = re.search(r"got:? ([0-9a-f]{32})", str(error))
            errors.append(f"{url} served MD5 {served.group(1) if served else 'another'}")
        except OSError as error:  # requests' errors are OSErrors too
            errors.append(f"{url}: {_reason(error)}")
        else:
            log(f"{target}: downloaded, MD5 verified", quiet)
            return target
    tried = "; ".join(errors)
    if present:
        raise KeptUnverified(f"{target}: MD5 {actual} differs from the published {resource.md5}; kept the file "
                             f"as it is, since no verified copy could be downloaded ({tried})")
    if mismatches == len(errors):
        raise ChecksumError(f"{resource.filename}: no download matched the published MD5 {resource.md5}; "
                            f"nothing was written ({tried})")
    raise OSError(f"{resource.filename}: download failed, nothing was written ({tried})")


def _safe_members(names: list[str], archive: Path, folder: str) -> None:
    """Refuse archives whose entries would land outside ``folder`` (path traversal)."""
    for name in names:
        parts = Path(name).parts
        if Path(name).is_absolute() or ".." in parts or (parts and parts[0] != folder):
            raise ValueError(f"{archive}: unexpected entry {name!r} outside {folder}/")


def _move(source: Path, destination: Path) -> None:
    """One rename (atomic within the data directory's file system): the step a swap is made of."""
    os.replace(source, destination)


def _discard(folder: Path) -> None:
    """Delete a folder, its marker first, so that a half-deleted folder never looks complete.
    A symbolic link is removed, never what it points to."""
    if folder.is_symlink():
        folder.unlink()
        return
    (folder / MARKER).unlink(missing_ok=True)
    shutil.rmtree(folder)


def swap_in(unpacked: Path, target: Path) -> None:
    """Move the complete folder ``unpacked`` to ``target``, replacing what is there.

    The old folder steps aside under a hidden name, the new one moves in, then the old
    one is deleted. If the second rename fails (or is interrupted), the old folder is
    moved back, untouched; a run killed between the renames is repaired by `recover`.
    """
    if not target.exists():
        _move(unpacked, target)
        return
    aside = target.with_name(f".{target.name}.{REPLACED}{secrets.token_hex(4)}")
    _move(target, aside)
    try:
        _move(unpacked, target)
    except BaseException:
        _move(aside, target)
        raise
    _discard(aside)


def recover(folder: str, data_dir: Path, quiet: bool = False) -> None:
    """Repair what a killed run (SIGKILL, power loss) can leave next to ``data_dir/folder``.

    A folder set aside by `swap_in` is moved back if the data set folder is missing (the
    run died between the two renames) and deleted otherwise (it died while deleting it);
    temporary unpacking folders, never complete, are deleted.
    """
    target = data_dir / folder
    if not data_dir.is_dir():
        return
    asides = sorted(data_dir.glob(f".{folder}.{REPLACED}*"))
    if asides and not target.exists():
        if len(asides) > 1:
            raise FileExistsError(f"{target} is missing and several earlier copies lie next to it "
                                  f"({', '.join(p.name for p in asides)}); rename the right one to {folder}")
        _move(asides.pop(), target)
        log(f"{target}: restored the data set an interrupted --force had set aside", quiet)
    for leftover in asides + sorted(data_dir.glob(f".{folder}.{UNPACKING}*")):
        _discard(leftover)
        log(f"{leftover}: removed, left by an interrupted run", quiet)


def extract(archive: Path, data_dir: Path, folder: str, md5: str) -> Path:
    """Unpack ``archive`` (tar.gz or zip) so that ``data_dir/folder`` is complete or as it was.

    Unpacks into a temporary folder inside ``data_dir``, writes the marker file (with the
    archive's name and MD5) into the unpacked top folder, then moves it into place with
    `swap_in`. The temporary folder is removed whatever happens.
    """
    staging = Path(tempfile.mkdtemp(prefix=f".{folder}.{UNPACKING}", dir=data_dir))
    try:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as handle:
                _safe_members(handle.namelist(), archive, folder)
                handle.extractall(staging)
        else:
            with tarfile.open(archive, "r:*") as handle:
                _safe_members(handle.getnames(), archive, folder)
                handle.extractall(staging, filter="data")  # refuses links and devices too
        unpacked = staging / folder
        if not unpacked.is_dir():
            raise ValueError(f"{archive}: has no top folder {folder}/")
        (unpacked / MARKER).write_text(f"{archive.name} {md5}\n")
        target = data_dir / folder
        swap_in(unpacked, target)
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def is_complete(spec: DatasetSpec, data_dir: Path) -> bool:
    """Whether an archive data set was unpacked by this script from the verified archive."""
    marker = data_dir / spec.folder / MARKER
    expected = " ".join((spec.resources[0].filename, spec.resources[0].md5))
    return marker.is_file() and marker.read_text().strip() == expected


class DatasetFailed(OSError):
    """Some files of a data set failed; ``problems`` holds one line for each."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def download(spec: DatasetSpec, data_dir: Path, force: bool = False, keep_archive: bool = False,
             quiet: bool = False, downloader=None) -> Path:
    """Download, verify and (for archives) unpack one data set; return its folder.

    Files are handled by `download_file` (``force`` changes nothing for them: a file with
    the published MD5 is the official file). An archive data set already unpacked from the
    verified archive is skipped unless ``force``; a folder of that name the script did not
    unpack is refused unless ``force``, which replaces it atomically (`swap_in`).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    target = data_dir / spec.folder
    if not spec.archive:
        target.mkdir(exist_ok=True)
        problems = []
        for resource in spec.resources:
            try:
                download_file(resource, target, quiet, downloader)
            except (OSError, ValueError) as error:
                problems.append(str(error))
        if problems:
            raise DatasetFailed(problems)
        return target
    recover(spec.folder, data_dir, quiet)
    if is_complete(spec, data_dir) and not force:
        log(f"{target}: present and verified ({MARKER}), skipped", quiet)
        return target
    if target.exists() and not force:
        raise FileExistsError(f"{target} exists but was not unpacked by this script from a verified "
                              f"archive; move it away or pass --force to replace it")
    (resource,) = spec.resources
    archive = download_file(resource, data_dir, quiet, downloader)
    log(f"{archive}: unpacking into {target}", quiet)
    extract(archive, data_dir, spec.folder, resource.md5)
    if not keep_archive:
        archive.unlink()
    return target


class Terminated(KeyboardInterrupt):
    """Raised by the SIGTERM handler, so that SIGTERM unwinds (and cleans up) like Ctrl-C."""


def _raise_terminated(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Download MNIST, CIFAR-10, CIFAR-100 and Tiny ImageNet from their official sources "
                    "into the moecl data directory, verifying the published MD5 checksums. Present files "
                    "are replaced only by verified downloads, never deleted first.",
        epilog="Data sets: " + "; ".join(f"{name}: {spec.description}" for name, spec in DATASETS.items())
               + ". Exit status 1 if any data set failed or a present file could not be verified "
                 "(it is kept), 130/143 on SIGINT/SIGTERM.",
    )
    parser.add_argument("--dataset", action="append", choices=[*DATASETS, "all"], metavar="NAME",
                        help=f"data set to download ({', '.join(DATASETS)} or all); repeatable; default all")
    parser.add_argument("--data-dir", help="target directory (default: $MOECL_DATA, else ~/.cache/moecl)")
    parser.add_argument("--force", action="store_true",
                        help="unpack archives again and replace their folders (atomically) even if present")
    parser.add_argument("--keep-archive", action="store_true", help="keep the .tar.gz/.zip after unpacking")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or messages, only problems")
    args = parser.parse_args(argv)
    if pooch is None:
        print("download.py needs pooch: pip install 'moecl[data]' (or pip install pooch)", file=sys.stderr)
        return 1
    pooch.get_logger().setLevel("WARNING")  # this script says what it does itself
    names = args.dataset or ["all"]
    names = list(DATASETS) if "all" in names else list(dict.fromkeys(names))
    data_dir = resolve_data_dir(args.data_dir)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    failures = 0
    try:
        for name in names:
            try:
                folder = download(DATASETS[name], data_dir, args.force, args.keep_archive, args.quiet)
                log(f"{name}: ready in {folder}", args.quiet)
            except (OSError, ValueError) as error:
                failures += 1
                for problem in getattr(error, "problems", [str(error)]):
                    print(f"{name}: FAILED: {problem}", file=sys.stderr)
    except KeyboardInterrupt as interrupt:
        signum = signal.SIGTERM if isinstance(interrupt, Terminated) else signal.SIGINT
        print(f"download.py: stopped by {signum.name}; no temporary files left, every data set is complete "
              f"or as it was before", file=sys.stderr)
        return 128 + signum.value
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
