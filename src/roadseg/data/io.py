"""Reading images and masks with one-line errors naming the file; writing files atomically."""

from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from roadseg.errors import DataError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".webp")
MAX_PIXELS = 200_000_000  # larger images are refused (PIL's decompression-bomb guard)
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


def check_file(path: str | Path) -> Path:
    """A readable regular file, or a one-line DataError saying what the path is instead: missing, a symlink loop,
    a broken symlink, a folder, a FIFO or device (opening those would block or read forever), or empty."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DataError(f"{path}: symlink loop (the link leads back to itself)") from None
        if path.is_symlink():
            raise DataError(f"{path}: broken symlink (its target {os.readlink(path)} does not exist)") from None
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise DataError(f"{path}: file not found") from None
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise DataError(f"{path}: is a folder, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise DataError(f"{path}: not a regular file (a FIFO, socket or device)")
    if st.st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes)")
    return path


def resolved(path: str | Path) -> Path:
    """path.resolve(), or the absolute path where a symlink loop makes it unresolvable (Python < 3.13 raises)."""
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):
        return Path(os.path.abspath(path))


def _open(path: Path) -> Image.Image:
    path = check_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
            img.load()
        return img
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DataError(f"{path}: image too large (over {MAX_PIXELS} pixels)") from None
    except UnidentifiedImageError:
        raise DataError(f"{path}: not an image (unrecognised format)") from None
    except MemoryError:
        raise DataError(f"{path}: image too large to decode in memory") from None
    except Exception as exc:  # any decoder failure on garbage input means a corrupt file
        raise DataError(f"{path}: corrupt or truncated image ({exc.__class__.__name__}: {str(exc)[:100]})") from None


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the header only."""
    check_file(path)
    try:
        with Image.open(path) as img:
            return img.size
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except Exception as exc:
        raise DataError(f"{path}: not a readable image ({exc.__class__.__name__})") from None


def to_rgb8(img: Image.Image) -> np.ndarray:
    """Any PIL image -> (H, W, 3) uint8 RGB: grey, palette, RGBA, 16-bit and float modes are converted."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(img, dtype=np.int64)
        top = 65535 if a.max(initial=0) > 255 else 255
        a = (np.clip(a, 0, top) * 255 // top).astype(np.uint8)
        return np.repeat(a[:, :, None], 3, axis=2)
    if img.mode == "F":
        a = np.asarray(img, dtype=np.float32)
        a = np.clip(a * (255 if a.max(initial=0) <= 1 else 1), 0, 255).astype(np.uint8)
        return np.repeat(a[:, :, None], 3, axis=2)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.array(img, dtype=np.uint8)


def read_image(path: str | Path) -> np.ndarray:
    """An image file -> (H, W, 3) uint8 RGB, upright: an EXIF orientation (phone photos) is applied, as viewers do."""
    img = _open(Path(path))
    try:
        if img.getexif().get(0x0112, 1) != 1:  # only rotated photos: exif_transpose copies every image it is given
            from PIL import ImageOps

            img = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block: the pixels as stored
        pass
    try:
        return to_rgb8(img)
    except Exception as exc:
        raise DataError(f"{path}: cannot convert image mode {img.mode} to RGB ({exc.__class__.__name__})") from None


def read_mask(path: str | Path) -> np.ndarray:
    """A mask file -> its raw array: (H, W, 3) uint8 for colour masks, (H, W) for id masks."""
    img = _open(Path(path))
    if img.mode in ("P", "L", "I;16", "I"):
        return np.array(img)
    return np.array(img.convert("RGB"))


def list_images(folder: Path) -> list[Path]:
    """The image files of a folder by extension, sorted; links and odd entries are kept, so reading them names them."""
    try:
        entries = list(Path(folder).iterdir())
    except OSError as exc:
        raise DataError(f"{folder}: cannot list the folder ({exc.strerror})") from None
    return sorted(p for p in entries if p.suffix.lower() in IMAGE_EXTS and not p.name.startswith("."))


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files, folders and globs -> a sorted, de-duplicated list of image files."""
    import glob

    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out.extend(list_images(p))
        elif p.is_file():
            out.append(p)
        elif p.is_symlink():  # a broken or looping link given by name: say so (check_file names the problem)
            check_file(p)
        else:
            matches = sorted(glob.glob(item))
            if not matches:
                raise DataError(f"{item}: no such file, folder or glob match")
            # broken and looping links are kept, so reading them reports them (or --skip-bad lists them)
            out.extend(Path(m) for m in matches if Path(m).is_file() or Path(m).is_symlink())
    seen, unique = set(), []
    for p in out:
        r = resolved(p)
        if r not in seen:
            seen.add(r)
            unique.append(p)
    if not unique:
        raise DataError(f"{' '.join(inputs)}: no images found")
    return unique


LABEL_DIR_NAMES = ("gt_image_2",)  # KITTI's masks; CamVid's are '<split>annot'
KITTI_DIR_NAMES = ("image_2", "gt_image_2", "calib")  # what a KITTI split folder (training/, testing/) holds


def _layout_kind(folder: Path) -> str | None:
    """What a dataset reads from `folder`, told by its layout alone (no dataset given): 'label' for KITTI's
    gt_image_2 and CamVid's <split>annot; 'image' / 'calibration' for KITTI's image_2 / calib beside another KITTI
    folder; 'image' for CamVid's <split> beside <split>annot; a folder dataset's default images/ beside masks/."""
    from roadseg.config import DataConfig

    name, parent = folder.name, folder.parent
    if name in LABEL_DIR_NAMES or name.endswith("annot"):
        return "label"
    if name in KITTI_DIR_NAMES and sum((parent / n).is_dir() for n in KITTI_DIR_NAMES) >= 2:
        return "calibration" if name == "calib" else "image"
    if name and (parent / f"{name}annot").is_dir():
        return "image"
    pair = {DataConfig.image_dir: ("image", DataConfig.mask_dir), DataConfig.mask_dir: ("label", DataConfig.image_dir)}
    if name in pair and (parent / pair[name][1]).is_dir():
        return pair[name][0]
    return None


def dataset_dir(folder: str | Path, known: dict | None = None) -> tuple[Path, str] | None:
    """(the folder a dataset reads from, what it reads there: 'image', 'label' or 'calibration') that `folder` is or
    lies inside, by whatever path it is named; None when it is in none. `known`: {folder: kind} of a given dataset
    (an eval's frames, masks and calibration files); other folders are told by their layout (_layout_kind)."""
    known = {resolved(k): v for k, v in (known or {}).items()}
    r = resolved(folder)
    for f in (r, *r.parents):
        kind = known.get(f) or _layout_kind(f)
        if kind:
            return f, kind
    return None


def guard_outputs(outputs, inputs=(), dataset_dirs: dict | None = None) -> None:
    """Refuse (one-line DataError, before anything is written) to write an output onto an input file, by whatever
    path it is named, or into (or below) a folder a dataset reads from: `dataset_dirs` ({folder: 'image' | 'label' |
    'calibration'}) of the dataset at hand, and any folder whose layout says it is one (dataset_dir), so that no
    output is read as a frame or mask by the next run on that dataset."""
    ins = {resolved(p): p for p in inputs}
    seen, checked = set(), {}
    for o in outputs:
        o = Path(o)
        r = resolved(o)
        if r in seen:  # two inputs with one stem (a/x.png, b/x.jpg) would write one output twice
            raise DataError(f"{o}: two inputs would write this same output (same file name in different folders); "
                            "predict them into separate --out folders")
        seen.add(r)
        if r.parent not in checked:
            checked[r.parent] = dataset_dir(r.parent, dataset_dirs)
        if checked[r.parent]:
            d, kind = checked[r.parent]
            where = "is" if str(o.parent) == str(d) else f"{'is' if d == r.parent else 'lies inside'} {d},"
            raise DataError(f"{o.parent}: {where} a dataset's {kind} folder; write outputs elsewhere")
        if r in ins:
            raise DataError(f"{o}: output would overwrite the input {ins[r]}; choose another output")


def check_writable(path: str | Path, folder: bool = False, what: str = "output") -> Path:
    """Before any long work: `path` (a file to be written, or with `folder` a folder to write into) can be written.
    Creates nothing: the nearest existing folder on the way must accept a new file (probed, so read-only mounts and
    permissions are seen as the write would see them), and nothing on the way may be a file. One-line DataError."""
    path = Path(path)
    if path.is_dir() and not folder:
        raise DataError(f"{path}: is a folder; the {what} needs a file name")
    if path.exists() and folder and not path.is_dir():
        raise DataError(f"{path}: is a file; the {what} must be a folder")
    if path.is_symlink() and not path.exists():
        raise DataError(f"{path}: cannot write the {what} here: a broken symlink or symlink loop")
    anc = Path(os.path.abspath(path if folder else path.parent))
    while not anc.exists():
        if anc.is_symlink():
            raise DataError(f"{path}: cannot write the {what} here: {anc} is a broken symlink or symlink loop")
        anc = anc.parent
    if not anc.is_dir():
        raise DataError(f"{path}: cannot write the {what} here: {anc} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=anc):
            pass
    except OSError as exc:
        raise DataError(f"{path}: cannot write the {what} here: {anc} is not writable ({exc.strerror})") from None
    return path


def read_text(path: str | Path, what: str = "file") -> str:
    """A UTF-8 text file -> its text; missing or unreadable: a one-line DataError naming the file and `what` it is."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the {what} ({getattr(exc, 'strerror', None) or exc.__class__.__name__})") from None


def read_json(path: str | Path, what: str = "JSON file"):
    """A JSON file -> its value; missing, unreadable or corrupt: a one-line DataError naming the file."""
    import json

    path = Path(path)
    text = read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: corrupt {what} (not valid JSON: {exc.msg} at line {exc.lineno})") from None


def _umask() -> int:
    """The process's umask, read without changing it (os.umask would, for a moment, in every thread)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable, *, text: bool = False, by_name: bool = False,
                 fsync: bool = True) -> Path:
    """Write `path` all at once, never half-written: `write` fills a temporary file in the same folder
    (`.<name>.<random>.tmp`, unique per process, so two runs writing into one folder never collide), which is
    flushed, fsynced and renamed over `path`. On any exception (KeyboardInterrupt included) the temporary file is
    removed and `path` is left as it was. The file gets the permissions a plain open() would give it.

    write(f) gets the open temporary file: binary, or UTF-8 text with newline='' when `text`; `f.name` is its path.
    by_name=True: write(tmp) gets the temporary file's Path instead and writes it itself (for libraries that only
    write to a file name: torch.onnx.export, PyAV). fsync=False skips the fsync (per-frame outputs, where the rename's
    all-or-nothing is what matters and a sync per file would cost more than the write). The folder must exist.
    Returns `path`."""
    path = Path(path)
    mode = 0o666 & ~_umask()  # mkstemp creates 0600
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if by_name:
            try:
                os.fchmod(fd, mode)
            finally:
                os.close(fd)
            write(Path(tmp))
            if fsync:
                fd = os.open(tmp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        else:
            # the file object owns mkstemp's descriptor but carries the temporary file's name (libraries use f.name)
            kw = {"encoding": "utf-8", "newline": ""} if text else {}
            with open(tmp, "w" if text else "wb", opener=lambda _path, _flags: fd, **kw) as f:
                os.fchmod(f.fileno(), mode)
                write(f)
                f.flush()
                if fsync:
                    os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


KITTI_NAME = re.compile(r"^(um|umm|uu)_(\d{6})$")


def prob_name(name: str, task: str = "road") -> str:
    """The file name of a frame's probability PNG: um_000000 -> um_road_000000.png (the KITTI submission / devkit
    naming) for KITTI frames, NAME_prob.png for any other frame."""
    m = KITTI_NAME.match(name)
    return f"{m[1]}_{task}_{m[2]}.png" if m else f"{name}_prob.png"


def save_png_atomic(array: np.ndarray, path: Path) -> None:
    # compress level 1: 3x faster than the default 6, ~8% larger
    atomic_write(path, lambda f: Image.fromarray(array).save(f, format="PNG", compress_level=1), fsync=False)
