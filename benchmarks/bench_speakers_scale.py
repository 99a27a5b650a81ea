"""Speaker recognition at scale, GMM-UBM style, out of core: background model, MAP adaptation of every speaker in
one pass, full against top-C scoring, verification (EER, minDCF raw and S-normalised).

Synthetic speakers drawn as GMM-UBM assumes: a world mixture of diagonal Gaussians, each speaker a random shift
of its means, each utterance a random channel offset of all its frames. Training speech ``--seconds`` per speaker at 100 frames/s, test utterances of 3 s, a cohort of
impostor speakers for S-norm, trials of every test utterance against its speaker and ``--impostors`` others;
everything written as Parquet speaker by speaker and read back chunk by chunk (in this process when the data fits
its memory share, as dgmm decides).

Printed per stage: seconds, and for the background model's EM iteration and full scoring the seconds of their
equivalent matrix products measured beside them (NumPy, same process); identification accuracy and EER/minDCF
(NIST SRE 2008 costs); the process's peak resident memory. Full scoring is timed on ``--full-utterances`` test
utterances (all of them when 0), and top-C on the same ones for the speed-up.

    python benchmarks/bench_speakers_scale.py                  # the issue's 1,000 speakers x 30 s, K=512, d=40
    python benchmarks/bench_speakers_scale.py --speakers 200 --seconds 10 --components 256   # a quicker run
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import dgmm

FRAMES_PER_SECOND = 100


def speech(rng, world_means, world_scales, shift, n_frames):
    """Frames of one speaker: the world's components (by its weights, here equal), means shifted."""
    component = rng.integers(0, len(world_means), n_frames)
    return (
        world_means[component]
        + shift[component]
        + rng.normal(size=(n_frames, world_means.shape[1])) * world_scales[component]
    )


def write_speakers(folder: Path, rng, world, shifts, speakers, seconds: float, utterances: int, prefix: str,
                   channel: float = 0.0) -> int:  # fmt: skip
    """Parquet files of each speaker's frames, ``utterances`` utterances each, one file per 50 speakers; every
    utterance offset by its own channel (a constant shift of spread ``channel``, as a microphone adds)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"f{j:02d}" for j in range(world[0].shape[1])]
    frames = int(seconds * FRAMES_PER_SECOND)
    total = 0
    for first in range(0, len(speakers), 50):
        parts = []
        for s in speakers[first : first + 50]:
            for u in range(utterances):
                X = speech(rng, *world, shifts[s], frames) + rng.normal(scale=channel, size=world[0].shape[1])
                part = pd.DataFrame(X.astype(np.float32), columns=names)
                part["speaker"] = f"spk{s:04d}"
                part["utterance"] = f"{prefix}{s:04d}-{u}"
                parts.append(part)
        frame = pd.concat(parts, ignore_index=True)
        frame.to_parquet(folder / f"part-{first:05d}.parquet", row_group_size=65_536, index=False)
        total += len(frame)
    return total


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    value = function(*args, **kwargs)
    return value, time.perf_counter() - start


def gemm_seconds(n: int, d: int, columns: int, repeats: int = 2) -> float:
    """Seconds of the (n x 2d) by (2d x columns) product, by tiles of rows and blocks of at most 4,096 columns
    (the scoring kernel's tiling; NumPy's BLAS), the median of ``repeats``."""
    rng = np.random.default_rng(0)
    A, B = rng.normal(size=(min(n, 65_536), 2 * d)), rng.normal(size=(2 * d, columns))
    block = min(columns, 4096)
    tile = max(1, (1 << 21) // block)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(-(-n // A.shape[0])):
            for a in range(0, A.shape[0], tile):
                for b in range(0, columns, block):
                    A[a : a + tile] @ B[:, b : b + block]
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speakers", type=int, default=1_000)
    parser.add_argument("--seconds", type=float, default=30.0, help="training speech per speaker")
    parser.add_argument("--features", type=int, default=40)
    parser.add_argument("--components", type=int, default=512, help="K of the background model")
    parser.add_argument("--world", type=int, default=64, help="components of the world the speech is drawn from")
    parser.add_argument("--shift", type=float, default=0.05, help="spread of a speaker's shift of the world's means")
    parser.add_argument("--channel", type=float, default=0.0, help="spread of an utterance's channel offset")
    parser.add_argument("--iterations", type=int, default=5, help="EM iterations of the background model")
    parser.add_argument("--top-c", type=int, default=5)
    parser.add_argument("--impostors", type=int, default=10, help="impostor trials per test utterance")
    parser.add_argument("--cohort", type=int, default=100, help="impostor speakers of the S-norm cohort")
    parser.add_argument("--full-utterances", type=int, default=100, help="test utterances scored in full (0: all)")
    parser.add_argument("--cmvn", action="store_true", help="normalise each utterance's features (cmvn='utterance')")
    parser.add_argument("--folder", help="where the Parquet data goes (default: a temporary folder)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    d, K = args.features, args.components
    world = (rng.normal(scale=3.0, size=(args.world, d)), rng.uniform(0.5, 1.5, size=(args.world, d)))
    shifts = rng.normal(scale=args.shift, size=(args.speakers + args.cohort, args.world, d))
    folder = Path(args.folder or tempfile.mkdtemp(prefix="dgmm-speakers-"))
    enrolled = np.arange(args.speakers)
    cohort_speakers = np.arange(args.speakers, args.speakers + args.cohort)
    n_train, seconds = timed(
        write_speakers, folder / "train", rng, world, shifts, enrolled, args.seconds, 1, "train", args.channel
    )
    n_test = write_speakers(folder / "test", rng, world, shifts, enrolled, 3.0, 1, "test", args.channel)
    write_speakers(folder / "cohort", rng, world, shifts, cohort_speakers, 3.0, 1, "cohort", args.channel)
    print(f"{args.speakers} speakers, {n_train:,} training frames ({args.seconds:g} s each), {n_test:,} test frames, "
          f"d={d}, written in {seconds:.1f} s")  # fmt: skip
    rows = []

    features = [f"f{j:02d}" for j in range(d)]
    train = dgmm.ParquetDataset.open(str(folder / "train"), features)
    cmvn = "utterance" if args.cmvn else None
    ubm = dgmm.GaussianMixture(K, covariance_type="diag", max_iter=args.iterations, tol=0.0, random_state=0,
                               init_params="random_from_data", cmvn=cmvn)  # fmt: skip
    iterations: list[float] = []
    _, seconds = timed(ubm.fit, train, on_iteration=lambda report: iterations.append(report.seconds))
    per_iteration = float(np.median(iterations))  # an iteration's pass and M-step, the data read once before
    products = 2 * gemm_seconds(n_train, d, K)  # distances, then the statistics: two (n x 2d)(2d x K) products
    rows.append(("background model: EM iteration", per_iteration, products))

    classifier = dgmm.GaussianMixtureClassifier(K, covariance_type="diag", ubm=ubm, adapt="means", random_state=0,
                                                cmvn=cmvn)  # fmt: skip
    _, seconds = timed(classifier.fit, str(folder / "train"), "speaker", columns=features)
    rows.append((f"adaptation of {args.speakers} speakers (one pass)", seconds, None))

    test = pd.read_parquet(folder / "test")
    utterances = test["utterance"].unique()
    chosen = utterances if args.full_utterances == 0 else utterances[: args.full_utterances]
    subset = test[test["utterance"].isin(chosen)]
    full, seconds_full = timed(classifier.set_params(top_c=None).predict_groups, subset[[*features, "utterance"]],
                            "utterance")  # fmt: skip
    products = gemm_seconds(len(subset), d, args.speakers * K, repeats=1)
    rows.append((f"full scoring, {len(chosen)} utterances", seconds_full, products))
    top, seconds_top = timed(classifier.set_params(top_c=args.top_c).predict_groups,
                             subset[[*features, "utterance"]], "utterance")  # fmt: skip
    rows.append((f"top-{args.top_c} scoring, same utterances", seconds_top, None))
    truth = subset.groupby("utterance")["speaker"].first()
    accuracy_full = float(np.mean(full["class"].to_numpy() == truth[full["group"]].to_numpy()))
    accuracy_top = float(np.mean(top["class"].to_numpy() == truth[top["group"]].to_numpy()))
    every, seconds = timed(dgmm.identification_accuracy, classifier, str(folder / "test"), "utterance",
                           test.groupby("utterance")["speaker"].first())  # fmt: skip
    rows.append((f"top-{args.top_c} identification, all {len(utterances)} utterances", seconds, None))

    speaker_of = test.groupby("utterance")["speaker"].first()
    trials = [(speaker_of[u], u, True) for u in utterances]
    for u in utterances:
        others = rng.choice(args.speakers, args.impostors + 1, replace=False)
        trials += [(f"spk{s:04d}", u, False) for s in others if f"spk{s:04d}" != speaker_of[u]][: args.impostors]
    trials = pd.DataFrame(trials, columns=["model", "test", "target"])
    scored, seconds = timed(dgmm.score_trials, classifier, str(folder / "test"), "utterance", trials)
    rows.append((f"{len(trials):,} trials scored (top-{args.top_c})", seconds, None))
    normed, seconds = timed(dgmm.score_trials, classifier, str(folder / "test"), "utterance", trials, norm="s",
                            cohort=str(folder / "cohort"), cohort_groups="utterance")  # fmt: skip
    rows.append(("the same, S-normalised (cohort scored too)", seconds, None))
    raw, snorm = dgmm.verification_report(scored), dgmm.verification_report(normed)

    print(f"\n{'stage':52s} {'seconds':>9s} {'products':>9s} {'ratio':>6s}")
    for name, value, reference in rows:
        extra = f"{reference:9.2f} {value / reference:6.2f}" if reference else f"{'':9s} {'':6s}"
        print(f"{name:52s} {value:9.2f} {extra}")
    print(f"\ntop-{args.top_c} against full scoring: {seconds_full / seconds_top:.1f}x faster; identification accuracy "
          f"{100 * accuracy_top:.2f}% against {100 * accuracy_full:.2f}% ({len(chosen)} utterances)")  # fmt: skip
    print(f"identification over all {len(utterances)} test utterances: top-1 {100 * every['top_1']:.2f}%, "
          f"top-5 {100 * every['top_5']:.2f}%")  # fmt: skip
    print(f"verification, {raw['n_target']} target and {raw['n_nontarget']} non-target trials (C_miss=10, C_fa=1, "
          f"P_target=0.01): EER {100 * raw['eer']:.2f}% raw, {100 * snorm['eer']:.2f}% S-norm; minDCF "
          f"{raw['min_dcf']:.3f} raw, {snorm['min_dcf']:.3f} S-norm")  # fmt: skip
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak resident memory of this process: {peak:.2f} GiB; data on disk "
          f"{sum(f.stat().st_size for f in folder.rglob('*.parquet')) / 2**30:.2f} GiB")  # fmt: skip
    if args.folder is None:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
