"""The download script `data_scripts/download.py`: nothing present is lost, whatever fails.

Downloads are served by a local HTTP server on 127.0.0.1 started here (the script's real
pooch/requests path); "offline" is a closed port on 127.0.0.1. No test reaches the internet.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import os
import re
import signal
import socket
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytest.importorskip("pooch", reason="the download script needs pooch (pip install 'moecl[data]')")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "data_scripts" / "download.py"
FOLDER = "cifar-10-batches-py"


def md5(payload: bytes) -> str:
    return hashlib.md5(payload).hexdigest()


@pytest.fixture
def dl(monkeypatch):
    """The download script as a module (its registry can be patched per test)."""
    spec = importlib.util.spec_from_file_location("moecl_download_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    for name in ("NO_PROXY", "no_proxy"):  # requests must not send 127.0.0.1 through a proxy
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    return module


class Server:
    """A local HTTP server: ``files[name]`` is served at ``url(name)``; ``stall[name] = k``
    sends the first k bytes and then hangs until the test ends."""

    def __init__(self):
        self.files, self.stall, self.requests = {}, {}, []
        self.stalled, self.release = threading.Event(), threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.lstrip("/")
                server.requests.append(name)
                if name not in server.files:
                    self.send_error(404)
                    return
                payload = server.files[name]
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if name in server.stall:
                    self.wfile.write(payload[:server.stall[name]])
                    self.wfile.flush()
                    server.stalled.set()
                    server.release.wait(30)
                    return
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = Server()
    yield srv
    srv.close()


@pytest.fixture
def dead_url():
    """A URL on 127.0.0.1 where nothing listens: what the script meets offline."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/file"


def use_files(dl, monkeypatch, resources, name="mnist"):
    """Make the registry's data set ``name`` a plain-files data set of ``resources``."""
    monkeypatch.setitem(dl.DATASETS, name, dl.DatasetSpec(name, "test", tuple(resources), name, archive=False))


def use_archive(dl, monkeypatch, archive: bytes, urls):
    resource = dl.Resource("cifar-10-python.tar.gz", tuple(urls), md5(archive))
    monkeypatch.setitem(dl.DATASETS, "cifar10", dl.DatasetSpec("cifar10", "test", (resource,), FOLDER, archive=True))


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def archive_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, payload in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


# --------------------------------------------------------------------------- a present file is never deleted first


def test_offline_keeps_a_present_file_whose_checksum_differs(dl, monkeypatch, tmp_path, dead_url, capsys):
    """A re-compressed but intact file (as the shared MNIST training images) survives offline."""
    raw = os.urandom(20_000)
    official = gzip.compress(raw, compresslevel=9, mtime=0)
    recompressed = gzip.compress(raw, compresslevel=1, mtime=0)
    assert md5(official) != md5(recompressed) and gzip.decompress(recompressed) == raw
    use_files(dl, monkeypatch, [dl.Resource("train-images-idx3-ubyte.gz", (dead_url, dead_url + "2"), md5(official))])
    folder = tmp_path / "mnist"
    folder.mkdir()
    (folder / "train-images-idx3-ubyte.gz").write_bytes(recompressed)
    status = dl.main(["--dataset", "mnist", "--data-dir", str(tmp_path), "--quiet"])
    assert status == 1
    assert (folder / "train-images-idx3-ubyte.gz").read_bytes() == recompressed
    assert listing(folder) == ["train-images-idx3-ubyte.gz"]
    line = one_line(capsys.readouterr().err)
    assert "train-images-idx3-ubyte.gz" in line and "differs" in line and "kept" in line
    assert "Connection refused" in line


@pytest.mark.parametrize("present", [True, False], ids=["old-file-present", "nothing-present"])
def test_a_download_failing_verification_leaves_the_old_file_and_no_temporary_files(
        dl, monkeypatch, tmp_path, server, capsys, present):
    published = os.urandom(5000)
    server.files["f.gz"] = bytes([published[0] ^ 0xFF]) + published[1:]  # corrupt in transit
    use_files(dl, monkeypatch, [dl.Resource("f.gz", (server.url("f.gz"),), md5(published))])
    folder = tmp_path / "mnist"
    folder.mkdir()
    old = b"an older, differently compressed copy"
    if present:
        (folder / "f.gz").write_bytes(old)
    assert dl.main(["--dataset", "mnist", "--data-dir", str(tmp_path), "--quiet"]) == 1
    assert listing(folder) == (["f.gz"] if present else [])
    if present:
        assert (folder / "f.gz").read_bytes() == old
    assert server.requests == ["f.gz"]
    line = one_line(capsys.readouterr().err)
    assert "f.gz" in line and ("kept" in line if present else "nothing was written" in line)


def test_success_replaces_a_wrong_file_with_a_verified_one_and_tries_mirrors(dl, monkeypatch, tmp_path, server,
                                                                             capsys):
    published = os.urandom(5000)
    server.files["a/f.gz"] = published[:-1]  # the first mirror serves a truncated copy
    server.files["b/f.gz"] = published
    second = os.urandom(300)
    server.files["b/g.gz"] = second
    use_files(dl, monkeypatch, [dl.Resource("f.gz", (server.url("a/f.gz"), server.url("b/f.gz")), md5(published)),
                                dl.Resource("g.gz", (server.url("b/g.gz"),), md5(second))])
    folder = tmp_path / "mnist"
    folder.mkdir()
    (folder / "f.gz").write_bytes(b"stale")
    assert dl.main(["--dataset", "mnist", "--data-dir", str(tmp_path), "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    assert (folder / "f.gz").read_bytes() == published and (folder / "g.gz").read_bytes() == second
    assert dl.md5sum(folder / "f.gz") == md5(published)
    assert listing(folder) == ["f.gz", "g.gz"]
    assert server.requests == ["a/f.gz", "b/f.gz", "b/g.gz"]
    # verified files are skipped, with --force too (they are the official files)
    server.requests.clear()
    assert dl.main(["--dataset", "mnist", "--data-dir", str(tmp_path), "--quiet", "--force"]) == 0
    assert server.requests == []


# --------------------------------------------------------------------------- archives: unpacked atomically


def test_archive_is_unpacked_once_and_force_replaces_it(dl, monkeypatch, tmp_path, server):
    archive = archive_bytes({f"{FOLDER}/data_batch_1": b"one", f"{FOLDER}/test_batch": b"two"})
    server.files["c.tar.gz"] = archive
    use_archive(dl, monkeypatch, archive, [server.url("c.tar.gz")])
    args = ["--dataset", "cifar10", "--data-dir", str(tmp_path), "--quiet"]
    assert dl.main(args) == 0
    assert listing(tmp_path) == [FOLDER]  # archive removed, no temporary folders
    assert listing(tmp_path / FOLDER) == [dl.MARKER, "data_batch_1", "test_batch"]
    server.requests.clear()
    assert dl.main(args) == 0 and server.requests == []  # marker found: skipped
    (tmp_path / FOLDER / "stray").write_bytes(b"x")
    assert dl.main([*args, "--force"]) == 0
    assert listing(tmp_path) == [FOLDER]
    assert listing(tmp_path / FOLDER) == [dl.MARKER, "data_batch_1", "test_batch"]  # replaced, not merged


@pytest.mark.parametrize("fault", [OSError("disk full (simulated)"), KeyboardInterrupt()], ids=["error", "interrupt"])
def test_force_interrupted_mid_replacement_keeps_the_old_data_set_complete(
        dl, monkeypatch, tmp_path, server, capsys, fault):
    archive = archive_bytes({f"{FOLDER}/data_batch_1": b"new", f"{FOLDER}/test_batch": b"new"})
    server.files["c.tar.gz"] = archive
    use_archive(dl, monkeypatch, archive, [server.url("c.tar.gz")])
    old = tmp_path / FOLDER  # a data set the user put there (no marker): --force replaces it
    old.mkdir()
    (old / "data_batch_1").write_bytes(b"old")
    (old / "test_batch").write_bytes(b"old")
    before = snapshot(old)
    real_replace = os.replace

    def failing_replace(source, destination):
        if Path(destination) == old and FOLDER in Path(source).parent.name:  # the new folder moving in
            raise fault
        real_replace(source, destination)

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", failing_replace)
        status = dl.main(["--dataset", "cifar10", "--data-dir", str(tmp_path), "--quiet", "--force"])
    assert status == (130 if isinstance(fault, KeyboardInterrupt) else 1)
    assert snapshot(old) == before
    # the verified archive stays (a rerun need not download it again); nothing hidden is left
    assert listing(tmp_path) == sorted(["cifar-10-python.tar.gz", FOLDER])
    assert one_line(capsys.readouterr().err)
    assert dl.main(["--dataset", "cifar10", "--data-dir", str(tmp_path), "--quiet", "--force"]) == 0
    assert snapshot(old)["data_batch_1"] == b"new" and listing(tmp_path) == [FOLDER]


def test_force_replaces_a_symbolic_link_not_the_folder_it_points_to(dl, monkeypatch, tmp_path, server):
    archive = archive_bytes({f"{FOLDER}/data_batch_1": b"new"})
    server.files["c.tar.gz"] = archive
    use_archive(dl, monkeypatch, archive, [server.url("c.tar.gz")])
    elsewhere = tmp_path / "big-disk" / FOLDER
    elsewhere.mkdir(parents=True)
    (elsewhere / "data_batch_1").write_bytes(b"mine")
    (elsewhere / dl.MARKER).write_text("cifar-10-python.tar.gz 0\n")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / FOLDER).symlink_to(elsewhere, target_is_directory=True)
    assert dl.main(["--dataset", "cifar10", "--data-dir", str(data_dir), "--quiet", "--force"]) == 0
    assert not (data_dir / FOLDER).is_symlink() and (data_dir / FOLDER / "data_batch_1").read_bytes() == b"new"
    assert snapshot(elsewhere) == {"data_batch_1": b"mine", dl.MARKER: b"cifar-10-python.tar.gz 0\n"}
    assert listing(data_dir) == [FOLDER]


def test_a_run_killed_between_the_renames_is_repaired_offline(dl, monkeypatch, tmp_path, dead_url):
    archive = archive_bytes({f"{FOLDER}/data_batch_1": b"x"})
    use_archive(dl, monkeypatch, archive, [dead_url])
    complete = tmp_path / f".{FOLDER}.{dl.REPLACED}0123abcd"  # what SIGKILL after the first rename leaves
    complete.mkdir()
    (complete / "data_batch_1").write_bytes(b"x")
    (complete / dl.MARKER).write_text(f"cifar-10-python.tar.gz {md5(archive)}\n")
    (tmp_path / f".{FOLDER}.{dl.UNPACKING}zz").mkdir()  # and SIGKILL while unpacking
    assert dl.main(["--dataset", "cifar10", "--data-dir", str(tmp_path), "--quiet"]) == 0
    assert listing(tmp_path) == [FOLDER] and (tmp_path / FOLDER / "data_batch_1").read_bytes() == b"x"


def test_refuses_unverified_folders_and_unsafe_archives(dl, monkeypatch, tmp_path, server):
    archive = archive_bytes({"../escape.txt": b"bad"})
    server.files["evil.tar.gz"] = archive
    use_archive(dl, monkeypatch, archive, [server.url("evil.tar.gz")])
    (tmp_path / "data" / FOLDER).mkdir(parents=True)
    (tmp_path / "data" / FOLDER / "test_batch").write_bytes(b"mine")
    spec = dl.DATASETS["cifar10"]
    with pytest.raises(FileExistsError, match="--force"):
        dl.download(spec, tmp_path / "data", quiet=True)
    with pytest.raises(ValueError, match="escape.txt"):
        dl.download(spec, tmp_path / "data", force=True, quiet=True)
    assert not (tmp_path / "escape.txt").exists()
    assert (tmp_path / "data" / FOLDER / "test_batch").read_bytes() == b"mine"
    assert not [p for p in (tmp_path / "data").iterdir() if p.name.startswith(".")]


# --------------------------------------------------------------------------- signals


def test_sigterm_mid_download_leaves_no_temporary_file_and_the_old_file(tmp_path, server):
    published = os.urandom(3 << 20)
    server.files["f.gz"] = published
    server.stall["f.gz"] = 2 << 20
    folder = tmp_path / "mnist"
    folder.mkdir()
    (folder / "f.gz").write_bytes(b"old copy")
    driver = textwrap.dedent(f"""
        import importlib.util, sys
        spec = importlib.util.spec_from_file_location("dl", {str(SCRIPT)!r})
        dl = sys.modules["dl"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(dl)
        dl.DATASETS["mnist"] = dl.DatasetSpec("mnist", "t", (dl.Resource("f.gz", ({server.url('f.gz')!r},),
                                              {md5(published)!r}),), "mnist", archive=False)
        sys.exit(dl.main(["--dataset", "mnist", "--data-dir", {str(tmp_path)!r}, "--quiet"]))
    """)
    env = {**os.environ, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    proc = subprocess.Popen([sys.executable, "-c", driver], stderr=subprocess.PIPE, text=True, env=env)
    try:
        if not server.stalled.wait(20):
            proc.kill()
            pytest.fail(f"the download never started: {proc.communicate()[1]}")
        deadline = time.monotonic() + 10
        while len(listing(folder)) < 2 and time.monotonic() < deadline:  # pooch's temporary file
            time.sleep(0.02)
        assert len(listing(folder)) == 2, listing(folder)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM
    assert "SIGTERM" in one_line(stderr)
    assert listing(folder) == ["f.gz"] and (folder / "f.gz").read_bytes() == b"old copy"


# --------------------------------------------------------------------------- command line and registry


def test_help_names_the_options_and_data_sets(dl, capsys):
    with pytest.raises(SystemExit) as exit_info:
        dl.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for word in ("--dataset", "--data-dir", "--force", "--keep-archive", "--quiet", "tiny-imagenet"):
        assert word in out


def test_registry_matches_the_published_table_in_the_readme(dl):
    """The MD5s in the script are the ones data_scripts/README.md lists, file by file."""
    table = dict(re.findall(r"`([\w.-]+\.(?:gz|zip))` \| `([0-9a-f]{32})`", (SCRIPT.parent / "README.md").read_text()))
    registry = {r.filename: r.md5 for spec in dl.DATASETS.values() for r in spec.resources}
    assert registry == table and len(registry) == 7
    assert all(url.endswith(r.filename) for spec in dl.DATASETS.values() for r in spec.resources for url in r.urls)
