"""Check: one autounet training step equals one nnU-Net v2 training step, given the same weights and batch.

Usage (from the repository root, autounet installed)::

    python benchmarks/step_equivalence.py [--kind mr] [-c 2d 3d_fullres]

Writes the example dataset and plans + preprocesses it with both tools (as ``benchmarks/dataloader.py``), then,
per configuration: nnU-Net's trainer (in its own venv, ``_nnunet_driver.py stepdump``) draws one augmented batch,
runs forward, its deep-supervision loss, backward, gradient clipping and one SGD step, and saves everything.
autounet builds its network from its own plan, loads nnU-Net's initial weights (renamed by layer structure),
and runs its loss and optimizer on the same batch. The table shows both losses and the largest differences of
full-resolution output, gradients (relative to each tensor's largest gradient) and updated weights. Zeros
mean the network, loss, deep supervision, clipping and optimizer are the same computation; what remains to
differ between the tools is which batches they draw (``benchmarks/learns.py`` compares the outcome).
"""

from __future__ import annotations

import argparse

from _harness import WORK, print_table
from dataloader import IDS, Prepared, prepare, run_driver


def compare(prepared: Prepared, configuration: str) -> dict:
    """Run nnU-Net's step, then autounet's on the same weights and batch; return the differences."""
    import torch

    from autounet.dataset.labels import LabelScheme
    from autounet.dataset.raw import load_raw_dataset
    from autounet.inference.nnunet_model import _nnunet_key
    from autounet.networks.unet import build_network
    from autounet.planning.plans import load_plans
    from autounet.training.losses import build_loss
    from autounet.training.optim import build_optimizer
    from autounet.training.recipe import TrainingRecipe

    dump = WORK / "step_equivalence" / f"nnunet_{configuration}.pt"
    run_driver(prepared, "stepdump", configuration, ["--out", str(dump), "--threads", "1"], {"nnUNet_n_proc_DA": "0"})
    reference = torch.load(dump, weights_only=True)
    torch.set_num_threads(1)
    plan = load_plans(prepared.autounet_preprocessed / "plans.json").configuration(configuration)
    labels = LabelScheme.from_description(load_raw_dataset(prepared.raw).description)
    network = build_network(plan.network, reference["data"].shape[1], labels.num_outputs, deep_supervision=True)

    def nnunet_name(key: str) -> str:
        parts = key.split(".")
        if parts[:2] == ["heads", "levels"]:  # both index heads from the lowest resolution up
            return f"decoder.seg_layers.{parts[2]}.{parts[3]}"
        return _nnunet_key(key, plan.network.encoder, 0)

    names = {key: nnunet_name(key) for key in network.state_dict()}
    network.load_state_dict({key: reference["before"][name] for key, name in names.items()})
    network.train()
    recipe = TrainingRecipe()
    optimizer = build_optimizer(network, recipe)
    loss_function = build_loss(labels, plan.batch_dice, plan.network.num_stages - 1)
    outputs = network(reference["data"])
    loss = loss_function(outputs, reference["target"][0].long())
    loss.backward()
    gradient_difference = max(
        float((p.grad - reference["gradients"][names[k]]).abs().max() / reference["gradients"][names[k]].abs().max())
        for k, p in network.named_parameters() if names[k] in reference["gradients"])
    torch.nn.utils.clip_grad_norm_(network.parameters(), recipe.grad_clip_norm)
    optimizer.step()
    after = network.state_dict()
    return {"nnunet_loss": float(reference["loss"]), "autounet_loss": float(loss.detach()),
            "output": float((outputs[0].detach() - reference["output"]).abs().max()),
            "gradient": gradient_difference,
            "weights": max(float((after[k] - reference["after"][n]).abs().max()) for k, n in names.items()),
            "batch": "x".join(map(str, reference["data"].shape))}


def main() -> int:
    """Run the check and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", default="mr", choices=sorted(IDS))
    parser.add_argument("-c", "--configurations", nargs="+", default=["2d", "3d_fullres"],
                        choices=["2d", "3d_fullres"])
    args = parser.parse_args()
    prepared = prepare("step_equivalence", args.kind, 20, None, 2)
    rows = [("configuration", "batch", "nnU-Net loss", "autounet loss", "max |d output|", "max rel. d gradient",
             "max |d weight| after step")]
    for configuration in args.configurations:
        r = compare(prepared, configuration)
        rows.append((configuration, r["batch"], f"{r['nnunet_loss']:.6f}", f"{r['autounet_loss']:.6f}",
                     f"{r['output']:.2e}", f"{r['gradient']:.2e}", f"{r['weights']:.2e}"))
    print(f"\nDataset: example '{args.kind}'; one step, same initial weights and batch, float32, 1 thread\n")
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
