"""``vidfx ofx build`` and ``vidfx ofx install``: make and install the OFX plugin bundle.

The C sources and their Makefile ship inside the package (``vidfx.ofx_bridge``, this module's
folder), so the same commands work from an installed wheel and from a source checkout. ``build``
runs make on them with the output in a writable build folder (never inside the package) and
writes two files into ``Contents/Resources``: ``nodes.txt`` (the manifest: the node list and
parameter schemas; the plugin's list of effects comes from it alone, so it never depends on the
live server, whose nodes the plugin checks against it before use) and ``server_cmd``
(how the plugin starts ``vidfx serve``: this Python interpreter, so the host need not know
about virtual environments). ``install`` copies the bundle into the hosts' plugin folder.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import vidfx

BUNDLE_NAME = "vidfx.ofx.bundle"


def source_dir() -> Path:
    """The plugin's C sources and Makefile: the folder of this module, wherever vidfx is installed."""
    return Path(__file__).resolve().parent


def default_build_dir() -> Path:
    """Where ``vidfx ofx build`` builds by default: ``$XDG_CACHE_HOME/vidfx/ofx`` (``~/.cache/vidfx/ofx``)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "vidfx" / "ofx"


TARGETS = ("linux", "macos", "windows")
COMPILERS = {"linux": "gcc", "macos": "clang", "windows": "x86_64-w64-mingw32-gcc"}


def host_target() -> str:
    """The ``--target`` that builds for this machine."""
    return "windows" if sys.platform == "win32" else "macos" if sys.platform == "darwin" else "linux"


def arch_dir(target: str | None = None) -> str:
    """The OFX architecture folder name for ``target`` (default: this machine)."""
    target = target or host_target()
    if target == "windows":
        return "Win64"
    if target == "macos":
        return "MacOS"  # a universal (x86_64 + arm64) binary; untested
    machine = platform.machine().lower() if host_target() == "linux" else "x86_64"
    return "Linux-x86-64" if machine in ("x86_64", "amd64") else f"Linux-{machine}"


def default_prefix() -> Path:
    """Where OFX hosts look for plugins: /usr/OFX/Plugins (Linux), /Library/OFX/Plugins (macOS)."""
    return Path("/Library/OFX/Plugins") if sys.platform == "darwin" else Path("/usr/OFX/Plugins")


def installed_in_site_packages(package: Path) -> bool:
    """Whether ``package`` lies in one of this interpreter's site-packages folders (a wheel install)."""
    folders = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], site.getusersitepackages()}
    folders.update(site.getsitepackages())
    return any(package.is_relative_to(Path(f).resolve()) for f in folders)


def server_command() -> str:
    """The shell command that starts the render server with this interpreter.

    An installed vidfx is found by the interpreter alone; vidfx run from elsewhere (a source
    checkout or an editable install) gets its folder on PYTHONPATH, so the server runs the same code.
    """
    # idle servers exit after 30 min (freeing GPU memory); the plugin restarts one on demand
    package = Path(vidfx.__file__).resolve().parent
    if sys.platform == "win32":  # a CreateProcess command line (untested: see docs/ofx.md)
        cmd = subprocess.list2cmdline([sys.executable, "-m", "vidfx.server", "--idle-timeout", "1800"])
        if not installed_in_site_packages(package):
            cmd = f'cmd /c "set "PYTHONPATH={package.parent}" && {cmd}"'
        return cmd
    cmd = f"{shlex.quote(sys.executable)} -m vidfx.server --idle-timeout 1800"
    if not installed_in_site_packages(package):
        cmd = f"env PYTHONPATH={shlex.quote(str(package.parent))} {cmd}"
    return cmd


def nodes_text() -> bytes:
    """The manifest: the body of the server's ``nodes`` reply (plugins in a stable order, each
    with the hash the plugin compares with the live server's) and the vidfx version it is from."""
    from vidfx.server.catalog import describe_fields
    from vidfx.server.protocol import encode

    return encode("ok", {"version": vidfx.__version__, **describe_fields()})[4:]


def build(build_dir: Path, source: Path, quiet: bool = False, target: str | None = None) -> Path:
    """Compile the plugin for ``target`` (linux, macos, windows; default: this machine) and
    fill in Resources; return the bundle path."""
    target = target or host_target()
    if not (source / "Makefile").is_file():
        raise SystemExit(f"vidfx ofx build: no Makefile in {source} (pass --source)")
    compiler = COMPILERS[target] if target != host_target() else os.environ.get("CC", COMPILERS[target])
    if shutil.which("make") is None or shutil.which(compiler) is None:
        raise SystemExit(f"vidfx ofx build: needs make and {compiler} on PATH")
    build_dir = build_dir.resolve()
    cmd = ["make", "-C", str(source), f"BUILD={build_dir}", f"TARGET={target}", f"ARCH={arch_dir(target)}"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"vidfx ofx build: make failed ({' '.join(cmd)})")
    bundle = build_dir / BUNDLE_NAME
    resources = bundle / "Contents" / "Resources"
    resources.mkdir(parents=True, exist_ok=True)
    (resources / "nodes.txt").write_bytes(nodes_text())
    # another platform's bundle cannot name this interpreter: it runs `vidfx` from PATH there
    cross = target != host_target()
    (resources / "server_cmd").write_text(("vidfx serve --idle-timeout 1800" if cross else server_command()) + "\n")
    if not quiet:
        print(f"built {bundle / 'Contents' / arch_dir(target) / 'vidfx.ofx'}")
    return bundle


def install(bundle: Path, prefix: Path) -> Path:
    """Copy the bundle into ``prefix`` (replacing an older copy); return the installed path."""
    target = prefix / BUNDLE_NAME
    try:
        prefix.mkdir(parents=True, exist_ok=True)
        tmp = prefix / (BUNDLE_NAME + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(bundle, tmp)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    except PermissionError as exc:
        raise SystemExit(
            f"vidfx ofx install: cannot write {prefix} ({exc.strerror}); "
            "run with sudo or pass --prefix DIR (and add DIR to OFX_PLUGIN_PATH)"
        ) from None
    print(f"installed {target}")
    return target


def main(argv: list[str] | None = None) -> int:
    """``vidfx ofx build|install``."""
    ap = argparse.ArgumentParser(prog="vidfx ofx", description="Build and install the vidfx OFX plugin.")
    sub = ap.add_subparsers(dest="command", required=True)
    for name in ("build", "install"):
        p = sub.add_parser(name, help=f"{name} the vidfx.ofx.bundle")
        p.add_argument("--build-dir", type=Path, default=None, help=f"where to build (default: {default_build_dir()})")
        p.add_argument(
            "--source",
            type=Path,
            default=None,
            help=f"a folder with the plugin's Makefile and src/ (default: {source_dir()})",
        )
        p.add_argument(
            "--target",
            choices=TARGETS,
            default=None,
            help=f"platform to build for (default: {host_target()}); windows cross-compiles with mingw-w64",
        )
        if name == "install":
            p.add_argument("--prefix", type=Path, default=None, help=f"plugin folder (default: {default_prefix()})")
    if argv and argv[0] == "--":  # `vidfx serve -- --opt` (how some wrappers pass options through)
        argv = argv[1:]
    args = ap.parse_args(argv)
    source = (args.source or source_dir()).resolve()
    build_dir = args.build_dir or default_build_dir()
    bundle = build(build_dir, source, target=args.target)
    if args.command == "install":
        install(bundle, args.prefix or default_prefix())
    return 0


if __name__ == "__main__":
    sys.exit(main())
