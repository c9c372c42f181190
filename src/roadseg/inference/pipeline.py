"""Images through a Predictor: overlays, masks and probability PNGs for a list of image files."""

from __future__ import annotations

import logging
from pathlib import Path

from roadseg.data.io import check_writable, guard_outputs, prob_name, read_image, resolved, save_png_atomic
from roadseg.errors import DataError, RoadsegError

log = logging.getLogger(__name__)


def _writable_dir(out: Path) -> Path:
    """The output folder, checked writable (data.io.check_writable: the one probe), then created."""
    check_writable(out, folder=True, what="output folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RoadsegError(f"{out}: cannot create output folder ({exc.strerror})") from None
    return out


def submission_frames(paths: list[Path], skip_bad: bool = False) -> tuple[list[Path], list[tuple[str, str]]]:
    """The frames a KITTI road submission can hold (those with a calibration file, KITTI's testing/calib/NAME.txt)
    and, with skip_bad, the others as (path, reason); without it a frame that lacks one is a one-line error listing
    them all. Checked before any model is loaded."""
    from roadseg.data.bev import calibration_file

    lacking = [Path(p) for p in paths if not calibration_file(p).is_file()]
    if lacking and not skip_bad:
        names = ", ".join(p.name for p in lacking[:8]) + (f" (+{len(lacking) - 8} more)" if len(lacking) > 8 else "")
        raise DataError(f"{calibration_file(lacking[0]).parent}: no calibration file for {len(lacking)} of the "
                        f"{len(paths)} frames ({names}); the bird's-eye view needs one per frame (--skip-bad leaves "
                        "them out)")
    return ([Path(p) for p in paths if Path(p) not in lacking],
            [(str(p), f"{calibration_file(p)}: no calibration file") for p in lacking])


def _write(result, path: Path, image, out: Path, probs: bool, task: str, submission: bool) -> None:
    """One frame's outputs: its perspective files (Result.save), or for a submission its BEV probability map."""
    try:
        if submission:
            from roadseg.data.bev import frame_lookup

            save_png_atomic(frame_lookup(path, image.shape[:2]).warp(result.prob_u8), out / prob_name(path.stem, task))
        else:
            result.save(out, path.stem, image=image, probs=probs, task=task)
    except OSError as exc:
        raise RoadsegError(f"{out}: cannot write output ({exc.strerror or exc})") from None


def predict_images(predictor, paths: list[Path], out_dir: str | Path, probs: bool = False, skip_bad: bool = False,
                   task: str = "road", progress=None, submission: bool = False) -> dict:
    """Write `<name>_overlay.png`, `<name>_mask.png` (and with probs the KITTI-named probability PNG) per frame
    (Result.save: the mask is the model's road decision at its threshold), predictor.settings.batch_size frames a call.
    submission: instead, only what KITTI's road server takes: the bird's-eye-view 8-bit probability map of each frame
    (800x400, data.bev), named um_road_000000.png etc.; every frame needs its calibration file (submission_frames).
    All inputs are decoded first, so an unreadable one stops the run before anything is written
    (or, with skip_bad, is listed and skipped); the first KEEP_DECODED_BYTES of decoded frames are kept for the
    predictions, the rest decoded again batch by batch, so memory stays bounded however many large images there
    are. Returns {"written": [...], "skipped": [(path, reason)]}."""
    out = Path(out_dir)
    home = next((Path(p) for p in paths if resolved(Path(p)).parent == resolved(out)), None)
    if home is not None:  # outputs beside the inputs would be read as inputs by the next run on that folder
        raise DataError(f"{out}: holds the input {home.name}; write the outputs to another folder")
    suffixes = () if submission else ("_overlay.png", "_mask.png")
    guard_outputs([out / f"{Path(p).stem}{suffix}" for p in paths for suffix in suffixes]
                  + [out / prob_name(Path(p).stem, task) for p in paths if probs or submission], inputs=paths)
    images, skipped, kept = [], [], 0  # (path, decoded frame or None: decode again when its turn comes)
    for p in paths:
        try:
            img = read_image(p)
        except DataError as exc:
            if not skip_bad:
                raise
            skipped.append((str(p), str(exc)))
            continue
        keep = kept + img.nbytes <= KEEP_DECODED_BYTES
        kept += img.nbytes if keep else 0
        images.append((Path(p), img if keep else None))
        del img
    out = _writable_dir(Path(out_dir))
    written = []
    bar = progress(len(images), "predict") if progress else None
    batch_size = predictor.settings.batch_size
    for i in range(0, len(images), batch_size):
        chunk = []
        for p, img in images[i : i + batch_size]:
            try:
                chunk.append((p, img if img is not None else read_image(p)))
            except DataError as exc:  # changed since it was checked
                if not skip_bad:
                    raise DataError(f"{exc} (it changed after the check; {len(written)} frames were written to "
                                    f"{out})") from None
                skipped.append((str(p), str(exc)))
        batch = len(images[i : i + batch_size])
        images[i : i + batch_size] = [(p, None) for p, _ in images[i : i + batch_size]]  # let the batch go
        if not chunk:
            if bar is not None:
                bar.update(batch)
            continue
        for (p, img), result in zip(chunk, predictor.predict_batch([im for _, im in chunk])):
            _write(result, p, img, out, probs, task, submission)
            written.append(str(p))
        if bar is not None:
            bar.update(batch)  # a frame skipped at the re-read counts as done too
    if bar is not None:
        bar.close()
    return {"written": written, "skipped": skipped}


KEEP_DECODED_BYTES = 1 << 30  # decoded frames predict_images holds from its check to its predictions (1 GiB)


