"""Built-in style presets: the catalog (bot/presets_catalog.json) and a small command line.

    python -m bot.presets fetch              download every catalog image (Wikimedia Commons)
    python -m bot.presets import NAME IMAGE  add a local picture as built-in preset NAME
    python -m bot.presets import-dir DIR     add every picture of DIR (file stem = name)
    python -m bot.presets list               what the database has

Pictures are re-encoded (`engine.images.reencode_for_storage`) and stored in the database of
the data directory (STYLEBOT_DATA_DIR, default ./data). No Telegram token is needed. Metadata
(title, artist, year, licence, source) comes from the catalog when the name matches. Image
files are never committed to the repository.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.gallery import make_thumbnail
from bot.settings import load_data_dir
from bot.storage import DuplicateName, Preset, Storage, StorageError
from engine.errors import ImageError
from engine.images import reencode_for_storage

CATALOG_PATH = Path(__file__).with_name("presets_catalog.json")
USER_AGENT = "stylebot/0.1 (Telegram style-transfer bot; preset fetcher)"
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
DOWNLOAD_LIMIT = 30 * 1024 * 1024


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    title: str
    artist: str
    year: str
    licence: str
    source_url: str
    download_url: str

    def metadata(self) -> dict[str, str]:
        return {
            "title": self.title,
            "artist": self.artist,
            "year": self.year,
            "licence": self.licence,
            "source_url": self.source_url,
        }


class PresetImportError(Exception):
    """One picture could not be imported; the message says which and why."""


def load_catalog(path: Path = CATALOG_PATH) -> list[CatalogEntry]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return [
        CatalogEntry(
            name=item["name"],
            title=item.get("title", ""),
            artist=item.get("artist", ""),
            year=str(item.get("year", "")),
            licence=item.get("licence", ""),
            source_url=item.get("source_url", ""),
            download_url=item.get("download_url", item.get("source_url", "")),
        )
        for item in data["presets"]
    ]


def catalog_entry(name: str) -> CatalogEntry | None:
    key = name.strip().lower()
    return next((e for e in load_catalog() if e.name == key), None)


async def import_image(
    storage: Storage, name: str, data: bytes, *, replace: bool = False
) -> Preset:
    """Re-encode `data` (in a thread) and store it as the built-in preset `name`."""
    try:
        image = await asyncio.to_thread(reencode_for_storage, data)
        thumbnail = await asyncio.to_thread(make_thumbnail, image)
    except ImageError as exc:
        raise PresetImportError(f"{name}: {exc}") from None
    entry = catalog_entry(name)
    if replace:
        existing = await storage.find_preset(name, None)
        if existing is not None and existing.owner_id is None:
            await storage.delete_preset(existing.id, None)
    try:
        if entry is None:
            return await storage.add_preset(None, name, image, thumbnail=thumbnail)
        return await storage.add_preset(
            None,
            name,
            image,
            thumbnail=thumbnail,
            title=entry.title,
            artist=entry.artist,
            year=entry.year,
            licence=entry.licence,
            source_url=entry.source_url,
        )
    except DuplicateName:
        raise PresetImportError(
            f"{name}: a built-in preset of that name exists (use --replace)"
        ) from None
    except StorageError as exc:
        raise PresetImportError(f"{name}: {exc}") from None


def image_files(directory: Path) -> list[Path]:
    return sorted(
        p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )


async def import_dir(storage: Storage, directory: Path, *, replace: bool = False) -> list[str]:
    """Import every picture of `directory` (file stem = preset name). Returns problems."""
    problems = []
    for path in image_files(directory):
        try:
            data = await asyncio.to_thread(path.read_bytes)
            await import_image(storage, path.stem, data, replace=replace)
        except (PresetImportError, OSError) as exc:
            problems.append(str(exc))
    return problems


def download(url: str, *, timeout: float = 30.0) -> bytes:
    """GET `url` with a User-Agent (Wikimedia asks for one). Raises PresetImportError."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data: bytes = response.read(DOWNLOAD_LIMIT + 1)
    except urllib.error.HTTPError as exc:
        raise PresetImportError(f"{url}: the server answered {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise PresetImportError(f"{url}: cannot connect ({exc.reason})") from None
    except TimeoutError:
        raise PresetImportError(f"{url}: no answer within {timeout:g} s") from None
    except OSError as exc:
        raise PresetImportError(f"{url}: {exc}") from None
    if len(data) > DOWNLOAD_LIMIT:
        raise PresetImportError(f"{url}: larger than {DOWNLOAD_LIMIT // 2**20} MB")
    return data


# -- command line -------------------------------------------------------------------------------
async def _with_storage(data_dir: Path, work: Any) -> int:
    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
    storage = Storage(data_dir / "stylebot.sqlite3")
    await storage.open()
    try:
        result: int = await work(storage)
        return result
    finally:
        await storage.close()


def _report(problems: Sequence[str], done: int) -> int:
    for problem in problems:
        print(f"stylebot presets: {problem}", file=sys.stderr)
    print(f"{done} preset(s) imported, {len(problems)} problem(s)")
    return 1 if problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bot.presets", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help="download the catalog's images into the database")
    fetch.add_argument("--timeout", type=float, default=30.0)
    fetch.add_argument("--replace", action="store_true", help="replace existing presets")
    one = sub.add_parser("import", help="import one picture as a built-in preset")
    one.add_argument("name")
    one.add_argument("image", type=Path)
    one.add_argument("--replace", action="store_true")
    many = sub.add_parser("import-dir", help="import every picture of a directory")
    many.add_argument("directory", type=Path)
    many.add_argument("--replace", action="store_true")
    sub.add_parser("list", help="list the built-in presets in the database")
    args = parser.parse_args(argv)
    data_dir = load_data_dir()

    try:
        if args.command == "fetch":
            return asyncio.run(_with_storage(data_dir, lambda s: _fetch(s, args)))
        if args.command == "import":
            if not args.image.is_file():
                print(f"stylebot presets: {args.image} is not a file", file=sys.stderr)
                return 2
            return asyncio.run(_with_storage(data_dir, lambda s: _import_one(s, args)))
        if args.command == "import-dir":
            if not args.directory.is_dir():
                print(f"stylebot presets: {args.directory} is not a directory", file=sys.stderr)
                return 2
            return asyncio.run(_with_storage(data_dir, lambda s: _import_many(s, args)))
        return asyncio.run(_with_storage(data_dir, _list))
    except OSError as exc:
        print(f"stylebot presets: {data_dir}: {exc.strerror or exc}", file=sys.stderr)
        return 1


async def _fetch(storage: Storage, args: argparse.Namespace) -> int:
    problems, done = [], 0
    present = {p.name.lower() for p in await storage.list_global_presets()}
    for entry in load_catalog():
        if entry.name in present and not args.replace:
            # Fetching again is harmless: what is already stored is kept (use --replace).
            print(f"{entry.name}: already in the database")
            continue
        print(f"fetching {entry.name} …", flush=True)
        try:
            data = await asyncio.to_thread(download, entry.download_url, timeout=args.timeout)
            await import_image(storage, entry.name, data, replace=args.replace)
            done += 1
        except PresetImportError as exc:
            problems.append(str(exc))
    return _report(problems, done)


async def _import_one(storage: Storage, args: argparse.Namespace) -> int:
    try:
        data = await asyncio.to_thread(args.image.read_bytes)
        await import_image(storage, args.name, data, replace=args.replace)
    except (PresetImportError, OSError) as exc:
        return _report([str(exc)], 0)
    return _report([], 1)


async def _import_many(storage: Storage, args: argparse.Namespace) -> int:
    files = image_files(args.directory)
    problems = await import_dir(storage, args.directory, replace=args.replace)
    return _report(problems, len(files) - len(problems))


async def _list(storage: Storage) -> int:
    for preset in await storage.list_global_presets():
        detail = f"{preset.title} — {preset.artist}, {preset.year}" if preset.title else ""
        print(f"{preset.name}\t{detail}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
