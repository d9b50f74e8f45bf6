"""The grouped-query decode attention against transformers' stock SDPA path."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from syncr2.simulation.gqa_attention import ATTENTION_NAME, grouped_decode_attention, register
from syncr2.simulation.tiny_models import build_from_spec


class _Module(torch.nn.Module):
    def __init__(self, groups: int) -> None:
        super().__init__()
        self.num_key_value_groups = groups
        self.is_causal = True


@pytest.mark.parametrize("groups,kv_heads", [(4, 2), (2, 3), (1, 4)])
def test_decode_step_equals_repeated_kv(groups, kv_heads):
    """One decode query against a padded cache: equal to explicit repeat_kv + softmax attention."""
    g = torch.Generator().manual_seed(groups * 10 + kv_heads)
    b, t, d = 3, 9, 8
    heads = kv_heads * groups
    q = torch.randn(b, heads, 1, d, generator=g, dtype=torch.float64)
    k = torch.randn(b, kv_heads, t, d, generator=g, dtype=torch.float64)
    v = torch.randn(b, kv_heads, t, d, generator=g, dtype=torch.float64)
    mask = torch.ones(b, 1, 1, t, dtype=torch.bool)
    mask[0, ..., :4] = False  # left padding of row 0
    mask[2, ..., :1] = False
    got, _ = grouped_decode_attention(_Module(groups), q, k, v, mask, scaling=0.3)
    # brute force: every query head with its own copy of its K/V head
    want = torch.empty(b, 1, heads, d, dtype=torch.float64)
    for row in range(b):
        keep = mask[row, 0, 0]
        for h in range(heads):
            kk, vv = k[row, h // groups, keep], v[row, h // groups, keep]
            p = torch.softmax(q[row, h, 0] @ kk.T * 0.3, dim=-1)
            want[row, 0, h] = p @ vv
    assert got.shape == (b, 1, heads, d)
    assert torch.allclose(got, want, atol=1e-12, rtol=0)


@pytest.fixture(scope="module")
def gqa_model(tmp_path_factory):
    spec = {"arch": "llama", "n_layers": 2, "hidden_size": 64, "n_heads": 8, "n_kv_heads": 2,
            "intermediate_size": 96, "seed": 3}
    return build_from_spec(spec, tmp_path_factory.mktemp("gqa") / "m")


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 0.1)])
def test_generate_equals_stock_sdpa(gqa_model, dtype, tol, one_thread):
    """Greedy generation through the registered function gives the stock path's logits and tokens."""
    register()
    stock = AutoModelForCausalLM.from_pretrained(gqa_model, dtype=dtype, attn_implementation="sdpa").eval()
    ours = AutoModelForCausalLM.from_pretrained(gqa_model, dtype=dtype, attn_implementation=ATTENTION_NAME).eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(7, stock.config.vocab_size, (3, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[0, :5] = 0  # left-padded rows
    mask[1, :2] = 0
    kw = dict(input_ids=ids, attention_mask=mask, max_new_tokens=8, min_new_tokens=8, do_sample=False,
              output_logits=True, return_dict_in_generate=True, pad_token_id=0)
    with torch.inference_mode():
        a, b = stock.generate(**kw), ours.generate(**kw)
    logits_a, logits_b = torch.stack(a.logits).float(), torch.stack(b.logits).float()
    assert torch.isfinite(logits_b).all()
    assert (logits_a - logits_b).abs().max().item() <= tol * logits_a.abs().max().item()
    if dtype == torch.float32:
        assert torch.equal(a.sequences, b.sequences)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_equals_stock(gqa_model):
    register()
    kw = dict(dtype=torch.bfloat16, device_map={"": "cuda"})
    stock = AutoModelForCausalLM.from_pretrained(gqa_model, attn_implementation="sdpa", **kw).eval()
    ours = AutoModelForCausalLM.from_pretrained(gqa_model, attn_implementation=ATTENTION_NAME, **kw).eval()
    ids = torch.randint(7, stock.config.vocab_size, (4, 40), device="cuda")
    mask = torch.ones_like(ids)
    mask[0, :17] = 0
    gen = dict(input_ids=ids, attention_mask=mask, max_new_tokens=16, min_new_tokens=16, do_sample=False,
               output_logits=True, return_dict_in_generate=True, pad_token_id=0)
    with torch.inference_mode():
        a, b = stock.generate(**gen), ours.generate(**gen)
    la, lb = torch.stack(a.logits).float(), torch.stack(b.logits).float()
    assert torch.isfinite(lb).all()
    assert (la - lb).abs().max().item() <= 0.05 * la.abs().max().item()
