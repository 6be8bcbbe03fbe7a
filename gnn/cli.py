"""``graphrec embed`` (and ``python -m gnn embed``): the batch embedding job from the command line."""

from __future__ import annotations

import argparse
import json
import logging

from graph.errors import command_parser, run_command

log = logging.getLogger(__name__)


def _param(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key.strip(), json.loads(value)
    except ValueError:
        return key.strip(), value


def add_embed_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``embed`` sub-command to an argparse sub-parser collection."""
    p = subparsers.add_parser(
        "embed",
        help="train graph embeddings (LightGCN or inductive SAGE) and write a versioned artifact",
        description=(
            "Read a snapshot (snapshot directory, local store or bolt:// URI), train or fine-tune a model, write "
            "a versioned artifact under --out, and write the embeddings back to Neo4j (node properties `embedding` "
            "and `embedding_mips_<range>`, with vector indexes that rank as the model's dot product) when the "
            "store is Neo4j."
        ),
    )
    p.add_argument(
        "--store",
        required=True,
        metavar="PATH_OR_BOLT_URI",
        help="snapshot dir, local store dir or bolt:// URI",
    )
    p.add_argument("--model", required=True, choices=["lightgcn", "sage"], help="model to train")
    p.add_argument(
        "--out", required=True, metavar="DIR", help="artifact root; the new version goes in DIR/<version>"
    )
    p.add_argument(
        "--task",
        default="both",
        choices=["tweets", "follows", "both"],
        help="training positives (default: %(default)s)",
    )
    p.add_argument("--epochs", type=int, help="maximum epochs")
    p.add_argument("--dim", type=int, help="embedding dimension")
    p.add_argument("--layers", type=int, dest="n_layers", help="propagation / message-passing layers")
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--batch-size", type=int, help="positives per step")
    p.add_argument("--loss", choices=["softmax", "full_softmax", "bpr"], help="training loss")
    p.add_argument(
        "--time-budget",
        type=float,
        dest="time_budget_s",
        metavar="SECONDS",
        help="stop after this much training time",
    )
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--device", help="auto (CUDA when available), cpu or cuda")
    p.add_argument(
        "--param",
        type=_param,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other model/training parameter",
    )
    p.add_argument(
        "--init-from",
        metavar="ARTIFACT_OR_CHECKPOINT",
        help="fine-tune from an earlier artifact or checkpoint",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run of the same job from its checkpoint",
    )
    wb = p.add_mutually_exclusive_group()
    wb.add_argument(
        "--write-back",
        dest="write_back",
        action="store_true",
        default=None,
        help="write embeddings to Neo4j (default when the store is Neo4j)",
    )
    wb.add_argument(
        "--no-write-back", dest="write_back", action="store_false", help="do not write embeddings to Neo4j"
    )
    p.add_argument(
        "--allow-below-popularity",
        action="store_true",
        help="publish the model even when it does not beat popularity on its validation carve "
        "(by default such a model is refused: no artifact, exit code 2)",
    )
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=cmd_embed)
    return p


def cmd_embed(args) -> int:
    import torch

    from gnn import distributed
    from gnn.job import run_embed

    if args.threads:
        torch.set_num_threads(args.threads)
    # under torchrun (WORLD_SIZE > 1): data-parallel over its ranks, gloo on CPU / NCCL on GPUs
    distributed.init_from_env()
    params = dict(args.param)
    for key in ("epochs", "dim", "n_layers", "lr", "batch_size", "loss", "time_budget_s", "seed", "device"):
        value = getattr(args, key)
        if value is not None:
            params[key] = value
    report = run_embed(
        args.store,
        args.model,
        args.out,
        task=args.task,
        params=params,
        init_from=args.init_from,
        resume=args.resume,
        write_back=args.write_back,
        progress=not args.no_progress,
        allow_below_popularity=args.allow_below_popularity,
    )
    m = report.metrics
    if report.artifact is None:
        return 0  # a data-parallel rank other than 0: rank 0 reports
    print(f"artifact {report.artifact} (snapshot {report.snapshot_id})")
    best = m.get("best_metric")
    if best is not None and best > float("-inf"):
        print(
            f"  best validation recall@20 {best:.4f} at epoch {m.get('best_epoch')}; {m.get('epochs_run')} epochs, {m.get('train_seconds', 0):.1f}s training on {m.get('device')}"
        )
    pop = m.get("popularity_val_recall@20")
    if m.get("beats_popularity") is not None and pop is not None:
        verdict = "beats" if m["beats_popularity"] else "DOES NOT BEAT"
        print(f"  {verdict} popularity on validation (recall@20 {pop:.4f})")
    for label, n in report.written.items():
        print(f"  wrote {n:,} {label} embeddings to Neo4j (vector indexes {label.lower()}_embedding_mips_*)")
    print(f"done in {report.seconds:.1f}s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser, sub = command_parser("python -m gnn", "Graph embedding jobs.")
    add_embed_parser(sub)
    args = parser.parse_args(argv)
    return run_command(args, f"{parser.prog} {args.command}")
