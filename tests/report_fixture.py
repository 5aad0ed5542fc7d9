"""Writes a demo-sized TimeBalance pipeline run folder for report tests.

The numbers are made up (a seeded generator), not results: the folder has the
layout and the size of the demo's run (configs/timebalance_r3d18tiny_synth_10pct:
10 classes, 7 stages, training stages logged every 100 steps, 10x10 confusion
matrices) so that //tools:report draws every kind of picture it draws for the
demo, in a test that cannot afford to train the demo.

Usage: report_fixture.py OUT_DIR
"""
import json
import math
import os
import random
import sys

CLASSES = ["OrbitStripedCircle", "RightUpGrow", "BounceSplitSquare", "UpRightGrow",
           "PulseBullseyeTriangle", "RightGrowUp", "SpinCheckedRing", "GrowRightUp",
           "SwingStripedCross", "UpGrowRight"]
TRAINING = {"pretrain_invariant": 90, "pretrain_distinctive": 90, "finetune_invariant": 1000,
            "finetune_distinctive": 1000, "distill": 600, "supervised": 1000}
ORDER = ["pretrain_invariant", "pretrain_distinctive", "score", "finetune_invariant",
         "finetune_distinctive", "distill", "supervised"]


def accuracy(rng, videos_per_class=10):
    per_class, confusion, right = [], [], 0
    for i, name in enumerate(CLASSES):
        row = [0] * len(CLASSES)
        for _ in range(videos_per_class):
            row[i if rng.random() < 0.4 else rng.randrange(len(CLASSES))] += 1
        confusion.append({"predicted": row})
        per_class.append({"class_name": name, "top1": row[i] / videos_per_class,
                          "videos": videos_per_class})
        right += row[i]
    total = videos_per_class * len(CLASSES)
    return {"videos": total, "clips_per_video": 10, "crops_per_clip": 1, "top1": right / total,
            "top5": min(1.0, right / total + 0.35), "seconds": 8.5, "per_class": per_class,
            "confusion": confusion}


def metrics(rng, stage, steps):
    log_every = 10 if steps < 100 else 100
    lines = []
    for step in range(log_every, steps + 1, log_every):
        t = step / steps
        line = {"step": step, "lr": 0.002 * 0.5 * (1 + math.cos(math.pi * t))}
        if stage.startswith("pretrain"):
            line["loss"] = 9 * math.exp(-2 * t) + rng.random() * 0.3
        else:
            line["loss_ce"] = 2.3 * math.exp(-2.5 * t) + rng.random() * 0.1
            line["train_top1"] = min(1.0, 0.1 + 0.9 * t)
        if stage == "distill":
            line["loss_distill_l"] = 0.07 * math.exp(-t)
            line["loss_distill_u"] = 0.045 * math.exp(-t)
            line["pl_acc_all"] = 0.32 + 0.01 * rng.random()
        line.update({"clips_per_s": 20 + rng.random() * 5, "data_wait_s": rng.random() * 0.01,
                     "decode_ms_per_clip": 11 + rng.random(), "augment_ms_per_clip": 1.5})
        lines.append(json.dumps(line))
    return "\n".join(lines) + "\n"


def main():
    out = sys.argv[1]
    rng = random.Random(0)
    stages = []
    for stage in ORDER:
        d = os.path.join(out, "stages", stage)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "config.pbtxt"), "w") as f:
            f.write('name: "timebalance_r3d18tiny_synth_10pct/%s"\nseed: 0\n' % stage)
        seconds = 40.0 + rng.random() * 200
        stages.append({"stage": stage, "seconds": seconds})
        if stage == "score":
            with open(os.path.join(d, "results.json"), "w") as f:
                json.dump({"videos": 270, "per_class": [
                    {"class_name": c, "mean_weight": rng.random(), "videos": 27} for c in CLASSES]}, f)
            continue
        with open(os.path.join(d, "metrics.jsonl"), "w") as f:
            f.write(metrics(rng, stage, TRAINING[stage]))
        results = {"experiment": "timebalance_r3d18tiny_synth_10pct/" + stage, "labeled_videos": 30,
                   "train_videos": 300, "labeled_fraction": 0.1, "steps": TRAINING[stage],
                   "train_seconds": seconds, "train_clips_per_s": 22.0,
                   "model_sha256": "%064x" % rng.getrandbits(256)}
        if stage.startswith("pretrain"):
            results["representation"] = {
                "knn_top1": 0.3, "knn_ordered_top1": 0.35, "temporal_similarity": 0.8,
                "retrieval": [{"k": 1, "recall": 0.3}, {"k": 5, "recall": 0.6}],
                "per_class": [{"class_name": c, "knn_top1": rng.random()} for c in CLASSES]}
        else:
            results["test"] = accuracy(rng)
        with open(os.path.join(d, "results.json"), "w") as f:
            json.dump(results, f)
    pipeline = {"experiment": "timebalance_r3d18tiny_synth_10pct", "labeled_videos": 30,
                "train_videos": 300, "labeled_fraction": 0.1, "student_init": "DISTINCTIVE",
                "score_rule": "temporal_similarity { num_clips: 4 }",
                "protocol": "10 clips x 1 centre crop", "stages": stages,
                "student": accuracy(rng), "invariant_teacher": accuracy(rng),
                "distinctive_teacher": accuracy(rng), "supervised": accuracy(rng)}
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(pipeline, f)


if __name__ == "__main__":
    main()
