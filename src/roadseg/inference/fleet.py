"""Batch inference over an archive on a Ray cluster: `predict` and `video` over a manifest, one model per actor.

The driver resolves the inference settings once (roadseg.load, which also builds the ONNX/INT8 cache entry before
any actor needs it) and hands the frozen InferenceSettings and the model path to a pool of actors; each actor opens
its Predictor once and serves units of work: `settings.batch_size` frames (written by pipeline.predict_images, so the
files are the single-process run's, byte for byte) or one whole clip (video.process_video). Every output is written
atomically, so a file that exists is complete: a rerun skips inputs whose outputs are all there. A unit that fails
is retried frame by frame; a frame or clip that still fails goes into OUT/failures.tsv (path, one-line error) and
the rest of the job goes on.

Why an actor pool (core Ray) rather than Ray Data's map_batches: the units are file paths, not rows of pixels, so
nothing is gained from Ray Data's blocks, and the pool keeps each batch exactly the frames a single process would
batch, reports progress per unit as it completes, and needs only `ray` (Ray Data adds pandas and pyarrow, 250 MB).
Ray is imported here only, lazily: without it the --ray flag is a one-line error."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from roadseg.data.io import IMAGE_EXTS, atomic_write, expand_inputs, prob_name, read_text, resolved
from roadseg.errors import DataError, RoadsegError

log = logging.getLogger(__name__)

MISSING_RAY = "--ray needs Ray: install roadseg[ray] (pip install 'roadseg[ray]')"
FAILURES = "failures.tsv"  # in the output folder: path<TAB>error, one line per input that failed
CLIP_EXTS = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".ts")  # what a folder tree of clips holds


def import_ray():
    try:
        import ray
    except ImportError:
        raise RoadsegError(MISSING_RAY) from None
    return ray


def _tree(folder: Path, exts: tuple[str, ...]) -> list[str]:
    """The files of a folder tree with one of `exts`, in path order; hidden files and folders left out."""
    found = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [os.path.join(root, f) for f in files if not f.startswith(".") and Path(f).suffix.lower() in exts]
    if not found:
        raise DataError(f"{folder}: no {'images' if exts == IMAGE_EXTS else 'clips'} in this folder tree")
    return sorted(found)


def manifest_entries(manifest: str | Path, exts: tuple[str, ...] = IMAGE_EXTS) -> list[str]:
    """A manifest -> the paths it names. A folder: every file with one of `exts` in its tree. A text file: one path
    per line (a file, a folder or a glob, as on the command line), blank lines and `# comments` skipped, relative
    paths taken from the manifest's folder. One-line DataError for a manifest that is missing, unreadable or empty."""
    path = Path(manifest)
    if path.is_dir():
        return _tree(path, exts)
    lines = [line.strip() for line in read_text(path, "manifest").splitlines()]
    entries = [str(path.parent / line) for line in lines if line and not line.startswith("#")]
    if not entries:
        raise DataError(f"{path}: the manifest names no files")
    return entries


def image_inputs(inputs: list[str], manifest: str | None) -> list[Path]:
    """The images of the command line's inputs and a manifest's entries, as `predict` takes them (expand_inputs)."""
    return expand_inputs([*inputs, *(manifest_entries(manifest) if manifest else [])])


def one_line(exc: BaseException) -> str:
    """An exception as the one line a failures file holds: a RoadsegError's own message, else its type and text."""
    text = str(exc) if isinstance(exc, RoadsegError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:500]


# --- the Ray side -------------------------------------------------------------------------------------------------


def open_predictor(model: str, settings):
    """The Predictor of `model` (a checkpoint path or an exported .onnx) with settings resolved already: what
    roadseg.load does after it resolves them, so every actor runs exactly the driver's settings."""
    from roadseg.inference.predictor import Predictor
    from roadseg.inference.runtimes import ModelSource, open_runtime
    from roadseg.models.checkpoint import PATH, ModelInfo, load_checkpoint

    if model.lower().endswith(".onnx"):
        from roadseg.optimize.runtime import read_graph

        graph = read_graph(model)
        info, source = ModelInfo.from_meta(graph.meta, model), ModelSource(graph=graph, name=model)
    else:
        ckpt = load_checkpoint(model)
        name = str(ckpt.get(PATH, model))
        info, source = ModelInfo.from_checkpoint(ckpt, name), ModelSource(checkpoint=ckpt, name=name)
    return Predictor(open_runtime(settings, source), settings, info)


class Worker:
    """One actor: its model, opened once (one CPU thread: the cluster's parallelism is its actors), and the two
    units of work it serves."""

    def __init__(self, model: str, settings):
        import torch

        torch.set_num_threads(1)
        self.predictor = open_predictor(model, settings)

    def _predict(self, paths: list[str], out: str, options: dict) -> dict:
        from roadseg.inference.pipeline import predict_images

        try:
            res = predict_images(self.predictor, [Path(p) for p in paths], out, skip_bad=True, **options)
        except Exception as exc:  # noqa: BLE001 - whatever a frame does, the job goes on and lists it
            return {"written": [], "failed": [(p, one_line(exc)) for p in paths]}
        return {"written": res["written"], "failed": res["skipped"]}

    def predict(self, paths: list[str], out: str, options: dict) -> dict:
        """predict_images on one batch (unreadable frames listed, not fatal); a batch that fails as a whole runs
        again frame by frame, so one bad frame costs only itself. {"written", "failed": [(path, error)], "n"}."""
        res = self._predict(paths, out, options)
        if len(paths) > 1 and not res["written"] and len(res["failed"]) == len(paths):
            parts = [self._predict([p], out, options) for p in paths]
            res = {k: [x for part in parts for x in part[k]] for k in ("written", "failed")}
        return {**res, "n": len(paths)}

    def video(self, clip: str, dst: str, options: dict) -> dict:
        """process_video on one clip. Returns {"written": [clip], "summary": {...}} or {"failed": [(clip, error)]}."""
        from roadseg.inference.video import process_video

        try:
            s = process_video(self.predictor, clip, dst, **options)
        except Exception as exc:  # noqa: BLE001
            return {"written": [], "failed": [(clip, one_line(exc))], "n": 1}
        return {"written": [clip], "failed": [], "n": 1, "summary": s.to_dict()}


@dataclass
class FleetRun:
    """What a job did: inputs written now, inputs whose outputs were complete already (skipped), those that failed
    (path, error), the failures file, and per-clip summaries (video)."""

    written: list[str] = field(default_factory=list)
    done_before: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    failures_file: Path | None = None
    actors: int = 0
    summaries: list[dict] = field(default_factory=list)


class RaySession:
    """Ray, joined or started for one job: `address` 'auto' starts a local instance (or joins the one `ray start`
    or RAY_ADDRESS points at), anything else is a cluster address (HOST:6379, ray://HOST:10001). One already
    initialised in this process is used as it is and left running."""

    def __init__(self, address: str = "auto", num_cpus: int | None = None):
        self.ray = import_ray()
        self.started = False
        if not self.ray.is_initialized():
            self.ray.init(address=None if address == "auto" else address, num_cpus=num_cpus,
                          include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
            self.started = True

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()

    def pool(self, model: str, settings, actors: int | None = None):
        """An ActorPool of `actors` Workers (default: one per CPU of the cluster, or per GPU for device cuda)."""
        from ray.util import ActorPool

        gpu = settings.device == "cuda"
        have = int(self.ray.cluster_resources().get("GPU" if gpu else "CPU", 1))
        n = max(1, min(actors or have, have))
        remote = self.ray.remote(Worker).options(num_cpus=1, num_gpus=1 if gpu else 0, max_restarts=1,
                                                 max_task_retries=1)
        return ActorPool([remote.remote(model, settings) for _ in range(n)]), n


def _run(session: RaySession, model: str, settings, units: list, call: Callable, actors: int | None,
         progress, total: int, what: str) -> FleetRun:
    """Every unit through the pool, progress over the whole job as units complete. The actors get absolute paths
    (a worker's folder is not the driver's); results name the inputs as they were given."""
    run = FleetRun()
    if not units:
        return run
    if settings.onnx is not None:
        settings = settings.replace(onnx=Path(os.path.abspath(settings.onnx)))
    pool, run.actors = session.pool(os.path.abspath(model), settings, min(actors or len(units), len(units)))
    bar = progress(total, what) if progress else None
    try:
        for res in pool.map_unordered(call, units):
            run.written += res["written"]
            run.failed += res["failed"]
            run.summaries += [res["summary"]] if "summary" in res else []
            if bar is not None:
                bar.update(res["n"])
    finally:
        if bar is not None:
            bar.close()
    return run


def _given(run: FleetRun, inputs: list) -> FleetRun:
    """The run's paths back as the inputs were given (the actors saw absolute ones), failures in input order."""
    back = {os.path.abspath(p): str(p) for p in inputs}
    order = {p: i for i, p in enumerate(back)}
    run.written = [back.get(p, p) for p in run.written]
    run.failed = [(back.get(p, p), e) for p, e in sorted(run.failed, key=lambda f: order.get(f[0], len(order)))]
    return run


def write_failures(out: Path, failed: list[tuple[str, str]]) -> Path:
    """OUT/failures.tsv: a header, then `path<TAB>error` per failed input, in input order; written at every job's
    end (with no rows when nothing failed), so a stale list never outlives the rerun that fixed it."""
    rows = ["path\terror"] + [f"{p}\t{e}".replace("\n", " ") for p, e in failed]
    return atomic_write(out / FAILURES, lambda f: f.write("\n".join(rows) + "\n"), text=True)


# --- the two jobs -------------------------------------------------------------------------------------------------


def image_outputs(path: Path, out: Path, probs: bool, task: str, submission: bool) -> list[Path]:
    """The files predict_images writes for one frame (the rerun's test of "complete")."""
    if submission:
        return [out / prob_name(path.stem, task)]
    return [out / f"{path.stem}_overlay.png", out / f"{path.stem}_mask.png", *([out / prob_name(path.stem, task)] if probs else [])]


def predict_fleet(session: RaySession, model: str, settings, paths: list[Path], out: str | Path, *, probs: bool = False,
                  task: str = "road", submission: bool = False, actors: int | None = None, progress=None) -> FleetRun:
    """pipeline.predict_images over `paths` on the Ray cluster: batches of settings.batch_size frames (the batches a
    single process makes), each frame's files byte-identical to it. Frames whose files all exist are skipped; the
    failed ones are listed in OUT/failures.tsv. Outputs must not collide (two inputs with one name) or land on an
    input: checked before any actor starts."""
    from roadseg.data.io import guard_outputs

    out = Path(out)
    home = next((p for p in paths if resolved(p).parent == resolved(out)), None)
    if home is not None:
        raise DataError(f"{out}: holds the input {home.name}; write the outputs to another folder")
    expected = {p: image_outputs(p, out, probs, task, submission) for p in paths}
    guard_outputs([f for files in expected.values() for f in files], inputs=paths)
    out.mkdir(parents=True, exist_ok=True)
    done = [p for p in paths if all(f.is_file() for f in expected[p])]
    todo = [os.path.abspath(p) for p in paths if p not in set(done)]
    size, where = settings.batch_size, os.path.abspath(out)
    options = {"probs": probs, "task": task, "submission": submission}
    units = [todo[i : i + size] for i in range(0, len(todo), size)]
    run = _given(_run(session, model, settings, units, lambda a, u: a.predict.remote(u, where, options), actors,
                      progress, len(todo), "predict"), paths)
    run.done_before = [str(p) for p in done]
    run.failures_file = write_failures(out, run.failed)
    return run


def video_fleet(session: RaySession, model: str, settings, clips: list[str], out: str | Path, *, suffix: str = ".mp4",
                actors: int | None = None, progress=None, **options) -> FleetRun:
    """video.process_video on every clip, one Ray task each, into OUT/<clip name><suffix>; clips whose output
    exists are skipped, failed ones listed in OUT/failures.tsv. `options`: process_video's keyword arguments."""
    from roadseg.data.io import guard_outputs

    out = Path(out)
    dst = {c: out / f"{Path(c).stem}{suffix}" for c in clips}
    guard_outputs(list(dst.values()), inputs=clips)
    out.mkdir(parents=True, exist_ok=True)
    done = [c for c in clips if dst[c].is_file()]
    todo = [c for c in clips if c not in set(done)]
    call = lambda a, c: a.video.remote(os.path.abspath(c), os.path.abspath(dst[c]), options)  # noqa: E731
    run = _given(_run(session, model, settings, todo, call, actors, progress, len(todo), "video"), clips)
    run.done_before = done
    run.failures_file = write_failures(out, run.failed)
    return run
