"""PyTorch peer of `qdc bench encode`: the same BERT weights and token ids, timed the same way.

With Hugging Face transformers installed (the GPU machine) the peer is transformers' BertModel
(attn_implementation "sdpa" and "eager"); without it (Debian's python3-torch), a plain-PyTorch BERT
that computes what BertModel's eager path computes. Prints one JSON object.

Usage: python3 bench/encode_peer.py CONFIG_JSON
  CONFIG_JSON: {"model": DIR, "ids": FILE (int64 safetensors 'input_ids' [N, L]), "batchSize": B,
                "device": "cpu"|"cuda", "dtype": "float32"|"bfloat16", "threads": T, "minSeconds": S}
"""
import json
import math
import struct
import sys
import time

import torch
import torch.nn.functional as F

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32}


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        t = torch.frombuffer(bytearray(data[8 + n + b : 8 + n + e]), dtype=DTYPES[info["dtype"]])
        out[name] = t.reshape(info["shape"])
    return out


class PlainBert(torch.nn.Module):
    """BertModel's eager forward (no pooler), parameters held under Hugging Face's names."""

    def __init__(self, cfg, weights, trainable=False):
        super().__init__()
        self.cfg = cfg
        self.w = torch.nn.ParameterDict({k.replace(".", "__"): torch.nn.Parameter(v, requires_grad=trainable) for k, v in weights.items()})

    def p(self, name):
        return self.w[name.replace(".", "__")]

    def forward(self, ids, mask):
        c = self.cfg
        H, nh = c["hidden_size"], c["num_attention_heads"]
        B, S = ids.shape
        x = F.embedding(ids, self.p("embeddings.word_embeddings.weight"))
        x = x + self.p("embeddings.position_embeddings.weight")[:S] + self.p("embeddings.token_type_embeddings.weight")[0]
        x = F.layer_norm(x, (H,), self.p("embeddings.LayerNorm.weight"), self.p("embeddings.LayerNorm.bias"), c["layer_norm_eps"])
        ext = (1.0 - mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
        for i in range(c["num_hidden_layers"]):
            L = lambda n: self.p(f"encoder.layer.{i}.{n}")
            split = lambda t: t.view(B, S, nh, H // nh).transpose(1, 2)
            q = split(F.linear(x, L("attention.self.query.weight"), L("attention.self.query.bias")))
            k = split(F.linear(x, L("attention.self.key.weight"), L("attention.self.key.bias")))
            v = split(F.linear(x, L("attention.self.value.weight"), L("attention.self.value.bias")))
            s = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(H // nh) + ext
            a = torch.matmul(s.softmax(-1), v).transpose(1, 2).reshape(B, S, H)
            a = F.linear(a, L("attention.output.dense.weight"), L("attention.output.dense.bias"))
            x = F.layer_norm(a + x, (H,), L("attention.output.LayerNorm.weight"), L("attention.output.LayerNorm.bias"), c["layer_norm_eps"])
            h = F.gelu(F.linear(x, L("intermediate.dense.weight"), L("intermediate.dense.bias")))
            o = F.linear(h, L("output.dense.weight"), L("output.dense.bias"))
            x = F.layer_norm(o + x, (H,), L("output.LayerNorm.weight"), L("output.LayerNorm.bias"), c["layer_norm_eps"])
        return x


def main():
    cfg = json.loads(sys.argv[1])
    torch.set_num_threads(cfg["threads"])
    dev = torch.device(cfg["device"])
    dtype = getattr(torch, cfg["dtype"])
    ids = load_safetensors(cfg["ids"])["input_ids"].to(dev)
    mask = torch.ones_like(ids)
    model_cfg = json.load(open(cfg["model"] + "/config.json"))
    models = {}
    try:
        from transformers import BertModel

        for impl in ("sdpa", "eager"):
            try:
                m = BertModel.from_pretrained(cfg["model"], attn_implementation=impl, add_pooling_layer=False, dtype=dtype)
            except TypeError:
                m = BertModel.from_pretrained(cfg["model"], attn_implementation=impl, add_pooling_layer=False, torch_dtype=dtype)
            models[f"transformers-{impl}"] = m.to(dev).eval()
    except ImportError:
        weights = {k: v.to(dtype) for k, v in load_safetensors(cfg["model"] + "/model.safetensors").items()}
        models["plain-pytorch"] = PlainBert(model_cfg, weights).to(dev).eval()
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    bs = cfg["batchSize"]
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "results": {}}
    for name, model in models.items():

        def run():
            with torch.inference_mode():
                for s in range(0, ids.shape[0], bs):
                    b, m = ids[s : s + bs], mask[s : s + bs]
                    h = model(b, m) if name == "plain-pytorch" else model(input_ids=b, attention_mask=m).last_hidden_state
                    mf = m.unsqueeze(-1).to(h.dtype)
                    F.normalize(((h * mf).sum(1) / mf.sum(1)).float(), dim=-1)

        run()
        sync()
        reps, t0 = 0, time.perf_counter()
        while True:
            run()
            reps += 1
            sync()
            el = time.perf_counter() - t0
            if el >= cfg["minSeconds"]:
                break
        out["results"][name] = {"docsPerSecond": ids.shape[0] * reps / el}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
