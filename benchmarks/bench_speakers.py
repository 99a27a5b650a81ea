"""Speaker identification with GMMs on synthetic speech: ML per speaker against UBM-MAP, and the cost
of fitting every speaker in shared passes.

    python benchmarks/bench_speakers.py [--out DIR] [--plot speakers.png] [--det det.png] [--channels] [--quick]

Needs ``espeak-ng`` (Debian: ``apt-get install espeak-ng``) and the ``speech`` extra
(``pip install dgmm[speech]``: python_speech_features). Not run in CI.

1. Speech: twelve speakers are espeak-ng's American English voice with four of its voice variants
   (m1, m3, f1, f3), each at three nearby pitches (40, 50, 60), one speaking rate, reading
   public-domain English (the opening of Lewis Carroll's *Alice's Adventures in Wonderland*);
   white noise at 20 dB SNR is added. MFCCs barely see pitch, so the three pitches of a variant
   are close voices (twelve distinct variants were told apart 97% of the time on 0.5 s, too easy
   a test). The first sentences are for training, the others for testing: the text differs.
2. Features: 13 MFCCs (the first replaced by the frame's log energy) and their deltas, 26 per
   10 ms frame (25 ms windows), silent frames (energy 30 dB under the utterance's loudest) dropped;
   written to Parquet (one file per speaker, columns ``c0..c12, d0..d12, speaker, utterance``).
3. Models, fitted on the training frames from Parquet: ML, one mixture per speaker by EM
   (``GaussianMixtureClassifier``); UBM-MAP, a background model on every speaker's frames,
   MAP-adapted to each (means, relevance factor 16, Reynolds et al. 2000). K in {8, 32},
   diagonal and full covariances.
4. Identification accuracy of test segments of 0.25, 0.5, 1 and 2 s (consecutive voiced frames of
   one test sentence), each decided by ``predict_groups`` (the sum of frame log-likelihoods).
5. Verification: every 1 s test segment against every speaker's UBM-MAP model (K = 32 diag), one
   target and eleven non-target trials each, scored by ``dgmm.score_trials`` (mean frame log-likelihood
   ratio to the background model), raw and T-normalised (cohort: the other speakers' models); EER and
   minDCF (C_miss = 10, C_fa = 1, P_target = 0.01), with and without per-sentence CMVN (``cmvn=
   "utterance"``); DET curves to ``--det``. ``--channels`` passes every sentence through its own
   channel (a random gain of 0.3-3 and first-order filter ``1 + a z^-1``, ``a`` in [-0.6, 0.6]: a
   microphone or telephone line), the case CMVN is for.
6. Cost of fitting S speakers: dgmm's classifier (every speaker in each pass) against S separate
   dgmm fits and S scikit-learn fits in memory, all ML, K = 32 diag, the same machine and run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import warnings

import numpy as np

import dgmm

TEXT = (
    "Alice was beginning to get very tired of sitting by her sister on the bank, and of having nothing to do. "
    "Once or twice she had peeped into the book her sister was reading, but it had no pictures or conversations "
    "in it. And what is the use of a book, thought Alice, without pictures or conversations? "
    "So she was considering in her own mind, as well as she could, for the hot day made her feel very sleepy "
    "and stupid, whether the pleasure of making a daisy chain would be worth the trouble of getting up and "
    "picking the daisies, when suddenly a White Rabbit with pink eyes ran close by her. "
    "There was nothing so very remarkable in that; nor did Alice think it so very much out of the way to hear "
    "the Rabbit say to itself, Oh dear! Oh dear! I shall be late! "
    "But when the Rabbit actually took a watch out of its waistcoat pocket, and looked at it, and then hurried "
    "on, Alice started to her feet, for it flashed across her mind that she had never before seen a rabbit with "
    "either a waistcoat pocket, or a watch to take out of it. "
    "Burning with curiosity, she ran across the field after it, and fortunately was just in time to see it pop "
    "down a large rabbit hole under the hedge. "
    "In another moment down went Alice after it, never once considering how in the world she was to get out "
    "again. "
    "The rabbit hole went straight on like a tunnel for some way, and then dipped suddenly down, so suddenly "
    "that Alice had not a moment to think about stopping herself before she found herself falling down a very "
    "deep well. "
    "Either the well was very deep, or she fell very slowly, for she had plenty of time as she went down to look "
    "about her and to wonder what was going to happen next. "
    "First, she tried to look down and make out what she was coming to, but it was too dark to see anything; "
    "then she looked at the sides of the well, and noticed that they were filled with cupboards and book shelves. "
    "Here and there she saw maps and pictures hung upon pegs. "
    "She took down a jar from one of the shelves as she passed; it was labelled Orange Marmalade, but to her "
    "great disappointment it was empty. "
    "She did not like to drop the jar for fear of killing somebody underneath, so managed to put it into one of "
    "the cupboards as she fell past it."
)
# twelve speakers: four of espeak-ng's voice variants, each at three pitches
VOICES = tuple(f"{variant}-p{pitch}" for variant in ("m1", "m3", "f1", "f3") for pitch in (40, 50, 60))
SEGMENT_SECONDS = (0.25, 0.5, 1.0, 2.0)
FRAME_STEP = 0.01


def sentences() -> tuple[list[str], list[str]]:
    """Training and test sentences: the first two thirds, the rest."""
    parts = [s.strip() + "." for s in TEXT.replace("!", ".").replace("?", ".").split(".") if s.strip()]
    cut = 2 * len(parts) // 3
    return parts[:cut], parts[cut:]


def synthesise(text: str, voice: str, path: str) -> tuple[int, np.ndarray]:
    from scipy.io import wavfile

    variant, pitch = voice.split("-p")
    subprocess.run(
        ["espeak-ng", "-v", f"en-us+{variant}", "-p", pitch, "-s", "165", "-w", path, text],
        check=True,
        capture_output=True,
    )
    rate, signal = wavfile.read(path)
    return rate, signal.astype(np.float64)


def features(signal: np.ndarray, rate: int, rng: np.random.Generator, snr_db: float = 20.0) -> np.ndarray:
    """26 features per voiced 10 ms frame: 13 MFCCs (log energy first) and their deltas."""
    from python_speech_features import delta, mfcc

    power = np.mean(signal**2)
    noisy = signal + rng.normal(0.0, np.sqrt(power / 10 ** (snr_db / 10)), signal.shape)
    cepstra = mfcc(noisy, rate, winlen=0.025, winstep=FRAME_STEP, numcep=13, nfft=1024, appendEnergy=True)
    frames = np.hstack([cepstra, delta(cepstra, 2)])
    energy = cepstra[:, 0]
    return frames[energy > energy.max() - np.log(10**3)]  # within 30 dB of the loudest frame


def make_corpus(out: str, quick: bool, channels: bool = False) -> dict:
    """Parquet files of training and test frames; returns their paths and sizes. With ``channels`` each
    sentence passes through a channel of its own (a gain and a first-order filter)."""
    import pandas as pd
    from scipy.signal import lfilter

    train_text, test_text = sentences()
    if quick:
        train_text, test_text = train_text[:5], test_text[:3]
    rng = np.random.default_rng(0)
    names = [f"c{j}" for j in range(13)] + [f"d{j}" for j in range(13)]
    sizes = {"train_frames": 0, "test_frames": 0}
    with tempfile.TemporaryDirectory() as tmp:
        for split, texts in (("train", train_text), ("test", test_text)):
            os.makedirs(os.path.join(out, split), exist_ok=True)
            for speaker, voice in enumerate(VOICES):
                parts = []
                for i, text in enumerate(texts):
                    rate, signal = synthesise(text, voice, os.path.join(tmp, "s.wav"))
                    if channels:
                        tilt, gain = rng.uniform(-0.6, 0.6), np.exp(rng.uniform(np.log(0.3), np.log(3.0)))
                        signal = gain * lfilter([1.0, tilt], [1.0], signal)
                    frames = features(signal, rate, rng)
                    frame = pd.DataFrame(frames, columns=names)
                    frame["speaker"] = voice
                    frame["utterance"] = f"{voice}-{split}-{i:02d}"
                    parts.append(frame)
                table = pd.concat(parts, ignore_index=True)
                sizes[f"{split}_frames"] += len(table)
                table.to_parquet(
                    os.path.join(out, split, f"speaker-{speaker:02d}.parquet"), index=False, row_group_size=4096
                )
    return {"train": os.path.join(out, "train"), "test": os.path.join(out, "test"), **sizes}


def segments(test, seconds: float) -> np.ndarray:
    """A segment id per frame of the test frames (a pandas DataFrame): consecutive runs of ``seconds`` within each sentence (shorter tails dropped: -1)."""
    length = int(round(seconds / FRAME_STEP))
    position = test.groupby("utterance").cumcount().to_numpy()
    index = position // length
    sizes = test.groupby([test["utterance"], index]).transform("size").to_numpy()
    codes = test["utterance"].astype("category").cat.codes.to_numpy().astype(np.int64) * 100_000 + index
    return np.where(sizes == length, codes, -1)


def accuracy_table(corpus: dict, client, quick: bool) -> list[dict]:
    import pandas as pd

    test = pd.read_parquet(corpus["test"])
    features_only = test.drop(columns=["speaker", "utterance"])
    counts = {length: len(np.unique(segments(test, length)[segments(test, length) >= 0])) for length in SEGMENT_SECONDS}
    print("test segments: " + ", ".join(f"{n} of {length:g} s" for length, n in counts.items()), flush=True)
    rows = []
    for K in (8, 32):
        for covariance_type in ("diag", "full"):
            for method, extra in (("ML", {}), ("UBM-MAP", {"ubm": "fit", "relevance_factor": 16.0, "adapt": "means"})):
                started = time.perf_counter()
                model = dgmm.GaussianMixtureClassifier(
                    K,
                    covariance_type=covariance_type,
                    random_state=0,
                    max_iter=50 if quick else 200,
                    client=client,
                    **extra,
                )
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", dgmm.ConvergenceWarning)
                    model.fit(corpus["train"], "speaker", columns=list(features_only.columns))
                seconds = time.perf_counter() - started
                row = {
                    "K": K,
                    "covariance": covariance_type,
                    "method": method,
                    "fit_s": round(seconds, 1),
                    "passes": model.passes_,
                }
                for length in SEGMENT_SECONDS:
                    groups = segments(test, length)
                    kept = groups >= 0
                    decided = model.predict_groups(features_only[kept], groups[kept], reduce="sum")
                    truth = test[kept].groupby(groups[kept])["speaker"].first()
                    row[f"{length:g}s"] = float(
                        (decided["class"].to_numpy() == truth.loc[decided["group"]].to_numpy()).mean()
                    )
                rows.append(row)
                print("  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    return rows


def verification_table(corpus: dict, client, quick: bool, det: str | None) -> list[dict]:
    """EER and minDCF of 1 s test segments against every speaker, raw and T-normalised, with and without CMVN."""
    import pandas as pd

    test = pd.read_parquet(corpus["test"])
    groups = segments(test, 1.0)
    kept = groups >= 0
    frames, groups = test[kept].drop(columns=["speaker"]), groups[kept]
    truth = test[kept].groupby(groups)["speaker"].first()
    trials = pd.DataFrame(
        [(speaker, segment, speaker == truth[segment]) for segment in truth.index for speaker in VOICES],
        columns=["model", "test", "target"],
    )
    rows, curves = [], {}
    for cmvn in (None, "utterance"):
        model = dgmm.GaussianMixtureClassifier(
            32, covariance_type="diag", ubm="fit", adapt="means", random_state=0, max_iter=50 if quick else 200,
            client=client, cmvn=cmvn,
        )  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dgmm.ConvergenceWarning)
            model.fit(corpus["train"], "speaker", columns=[c for c in frames.columns if c != "utterance"])
        data = frames if cmvn else frames.drop(columns=["utterance"])
        for norm in ("none", "t"):
            scored = dgmm.score_trials(model, data, groups, trials, norm=norm)
            report = dgmm.verification_report(scored)
            name = f"{'CMVN' if cmvn else 'raw features'}, {'T-norm' if norm == 't' else 'no norm'}"
            curves[name] = scored
            rows.append({"features": "CMVN" if cmvn else "raw", "norm": norm, "eer": report["eer"],
                         "min_dcf": report["min_dcf"], "trials": len(scored)})  # fmt: skip
            print("  ".join(f"{k}={v}" for k, v in rows[-1].items()), flush=True)
    if det:
        dgmm.plot_det(curves, det, overwrite=True)
        print(f"DET curves: {det}")
    return rows


def cost_of_classes(corpus: dict, repeats: int) -> list[tuple[str, float, int]]:
    """Seconds (median) and passes: the classifier, S separate dgmm fits, S scikit-learn fits (K = 32 diag, ML)."""
    import pandas as pd
    from sklearn.mixture import GaussianMixture as SklearnMixture

    from dgmm.testing import counted_in_process

    train = pd.read_parquet(corpus["train"])
    y = train.pop("speaker").to_numpy()
    train = train.drop(columns=["utterance"]).to_numpy()
    settings = dict(n_components=32, covariance_type="diag", random_state=0, max_iter=100, tol=1e-3)
    results = []
    for name in ("dgmm classifier (shared passes)", "dgmm, one fit per speaker", "scikit-learn, one fit per speaker"):
        times, passes = [], 0
        for _ in range(repeats):
            started = time.perf_counter()
            with counted_in_process() as counter, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if name.startswith("dgmm classifier"):
                    dgmm.GaussianMixtureClassifier(**settings).fit(train, y)
                elif name.startswith("dgmm,"):
                    for speaker in np.unique(y):
                        dgmm.GaussianMixture(**settings).fit(train[y == speaker])
                else:
                    for speaker in np.unique(y):
                        SklearnMixture(**settings).fit(train[y == speaker])
            times.append(time.perf_counter() - started)
            passes = counter.passes
        results.append((name, statistics.median(times), passes))
    return results


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, K in zip(axes, (8, 32)):
        for row in (r for r in rows if r["K"] == K):
            ax.plot(
                SEGMENT_SECONDS,
                [row[f"{s:g}s"] for s in SEGMENT_SECONDS],
                marker="o",
                linestyle="-" if row["method"] == "ML" else "--",
                label=f"{row['method']}, {row['covariance']}",
            )
        ax.set_xscale("log", base=2)
        ax.set_xticks(SEGMENT_SECONDS, [f"{s:g}" for s in SEGMENT_SECONDS])
        ax.set_xlabel("test segment (s)")
        ax.set_title(f"K = {K}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"identification accuracy ({len(VOICES)} speakers)")
    axes[0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="directory for the Parquet frames (default: a temporary one)")
    parser.add_argument("--plot", default="speakers.png", help="accuracy plot (PNG); '' for none")
    parser.add_argument("--quick", action="store_true", help="fewer sentences and iterations (a smoke test)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the cost comparison (median)")
    parser.add_argument("--det", default="det.png", help="DET curves of the verification trials (PNG); '' for none")
    parser.add_argument("--channels", action="store_true", help="a random channel per sentence (gain and tilt)")
    args = parser.parse_args()
    if shutil.which("espeak-ng") is None:
        raise SystemExit("bench_speakers: espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    out = args.out or tempfile.mkdtemp(prefix="dgmm-speakers-")
    started = time.perf_counter()
    corpus = make_corpus(out, args.quick, args.channels)
    print(
        f"corpus: {len(VOICES)} speakers, {corpus['train_frames']:,} training and {corpus['test_frames']:,} test frames "
        f"(26 features) in {out}, {time.perf_counter() - started:.0f} s"
    )
    from dgmm.execution import local_cluster

    with local_cluster(2) as client:
        rows = accuracy_table(corpus, client, args.quick)
        print("\nverification of 1 s segments against every speaker (UBM-MAP, K = 32 diag)")
        verification = verification_table(corpus, client, args.quick, args.det or None)
    print("\nidentification accuracy by test segment length")
    header = ["K", "covariance", "method", *[f"{s:g}s" for s in SEGMENT_SECONDS], "passes", "fit_s"]
    print(" | ".join(header))
    for row in rows:
        print(
            " | ".join(
                f"{row[h]:.3f}" if isinstance(row[h], float) and h.endswith("s") and h != "fit_s" else str(row[h])
                for h in header
            )
        )
    print("features | norm | EER | minDCF | trials")
    for row in verification:
        print(f"{row['features']} | {row['norm']} | {100 * row['eer']:.2f}% | {row['min_dcf']:.3f} | {row['trials']}")
    if args.plot:
        plot(rows, args.plot)
        print(f"plot: {args.plot}")
    print(f"\nfitting {len(VOICES)} speakers, ML, K = 32 diag, in memory (median of {args.repeats})")
    results = cost_of_classes(corpus, args.repeats)
    base = results[0][1]
    for name, seconds, passes in results:
        print(f"  {name:36s} {seconds:8.2f} s  {seconds / base:5.2f}x  passes {passes if passes else '- (in memory)'}")


if __name__ == "__main__":
    main()
