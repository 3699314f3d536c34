"""PyTorch peer of `qdc bench train`: one contrastive training step (query and document forward,
InfoNCE with hard negatives at logit scale 50, backward, gradient clipping, AdamW with the
decay/no-decay split) on the same weights and token ids. Prints one JSON object.

Usage: python3 bench/train_peer.py CONFIG_JSON
  CONFIG_JSON: {"model": DIR, "queries": FILE, "docs": FILE (int64 safetensors 'input_ids'),
                "device": "cpu"|"cuda", "threads": T, "minSeconds": S, "rounds": R}
"""
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from encode_peer import PlainBert, load_safetensors  # noqa: E402


def main():
    cfg = json.loads(sys.argv[1])
    torch.set_num_threads(cfg["threads"])
    dev = torch.device(cfg["device"])
    q = load_safetensors(cfg["queries"])["input_ids"].to(dev)
    d = load_safetensors(cfg["docs"])["input_ids"].to(dev)
    model_cfg = json.load(open(cfg["model"] + "/config.json"))
    weights = load_safetensors(cfg["model"] + "/model.safetensors")
    model = PlainBert(model_cfg, weights, trainable=True).to(dev).train()
    named = list(model.w.items())
    decay = [p for n, p in named if p.squeeze().ndim >= 2 and "bias" not in n]
    plain = [p for n, p in named if not (p.squeeze().ndim >= 2 and "bias" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": plain, "weight_decay": 0.0}], lr=1e-5)
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)

    def embed(ids):
        mask = torch.ones_like(ids)
        h = model(ids, mask)
        m = mask.unsqueeze(-1).to(h.dtype)
        return F.normalize((h * m).sum(1) / m.sum(1), dim=-1)

    def step():
        qe, de = embed(q), embed(d)
        logits = 50.0 * qe @ de.T
        labels = torch.arange(qe.shape[0], device=dev) * (de.shape[0] // qe.shape[0])
        loss = F.cross_entropy(logits, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    step()
    sync()
    best = float("inf")
    for _ in range(cfg.get("rounds", 1)):
        n, t0 = 0, time.perf_counter()
        while True:
            step()
            n += 1
            sync()
            el = time.perf_counter() - t0
            if el >= cfg["minSeconds"]:
                break
        best = min(best, el / n)
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "secondsPerStep": best}))


if __name__ == "__main__":
    main()
