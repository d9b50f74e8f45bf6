"""Tiny seeded random-weight chat checkpoints, built offline.

The default config runs the whole pipeline on CPU with two small models of the
Llama and Mistral architectures. They are written as ordinary Hugging Face
checkpoint directories (``save_pretrained``, safetensors, a fast tokenizer
trained here with the ``tokenizers`` library, a Jinja chat template) so that
:mod:`syncr2.simulation.lm` loads them through exactly the ``AutoTokenizer`` /
``AutoModelForCausalLM`` path it uses for real 7B models. Their weights are
random: what they say is noise, but their shapes, templates, padding and
special tokens behave like the real thing.

Building is deterministic: the same arguments give byte-identical weight and
tokenizer files (weights from a seeded RNG, the BPE trainer is deterministic
for a fixed corpus), and ``syncr2_build.json`` records the arguments and the
sha256 of every written weight file for provenance.

    python -m syncr2.simulation.tiny_models OUT_DIR '{"arch": "llama", "n_layers": 4, ...}'
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Literal

import torch

#: Special tokens of the tiny tokenizers, in id order (ids 0..6).
PAD, BOS, EOS = "<pad>", "<s>", "</s>"
SPECIAL_TOKENS = [PAD, BOS, EOS, "<unk>", "<|system|>", "<|user|>", "<|assistant|>"]

#: The tiny models' chat template: BOS once at the start (as the Llama-3 and
#: Mistral templates do), a role line per message, EOS after each message, and
#: an open assistant line when ``add_generation_prompt`` is set.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

BUILD_FILE = "syncr2_build.json"

_NAMES = [
    "Ana Lopez", "Ben Carter", "Chloe Kim", "Daniel Okafor", "Emma Novak", "Farid Haddad",
    "Grace Liu", "Hugo Martin", "Isla Brown", "Jonas Weber", "Keiko Sato", "Leo Rossi",
]

_LINES = """\
Hi there, how have you been lately?
I have been well, thank you for asking. How about you?
It is nice to finally meet you in person.
Do you have a minute to talk about the trip next week?
I was hoping we could split the cost of dinner tonight.
That sounds fair to me, as long as we share the tip as well.
I am not sure I agree with that plan.
Could you tell me a little more about what you need?
Honestly, I think we should wait until tomorrow.
Let me think about it for a moment.
I really appreciate your help with the move.
You are always so generous with your time.
Would you be willing to lower the price a little?
The price is already very low for a bike in this condition.
I can offer you eighty dollars, and I will pick it up today.
If you can do ninety, we have a deal.
Fine, ninety it is. When can I come by?
I am worried that our neighbors will be upset about the noise.
Maybe we should talk to them before the party starts.
That is a good idea. I will knock on their door this afternoon.
I noticed you borrowed my charger without asking.
I am sorry, I should have asked you first.
It is fine, just let me know next time.
Would you like to donate to the children's charity this year?
I would like to help, but my budget is tight this month.
Even a small donation makes a real difference.
Alright, I can give five dollars today.
Thank you so much, that means a lot to the kids.
Do you know anyone who works at the hospital?
My cousin is a nurse there, and she loves her job.
We both know Maria from the book club, right?
Yes, she introduced us last spring at the picnic.
I think you left your umbrella at my place.
Oh, thank you! I was looking everywhere for it.
I need to leave soon, but it was great talking to you.
Goodbye, and take care of yourself.
I have to go now. Let us talk again soon.
My goal is to convince you to join the team.
What would make this offer more attractive to you?
I would need more time off during the holidays.
That might be possible if we plan ahead.
I feel a bit hurt that you did not invite me.
I did not mean to leave you out, it was a small gathering.
Next time I will make sure to include you.
Thank you, I appreciate that.
Can we agree on a schedule for cleaning the kitchen?
How about I take Mondays and you take Thursdays?
That works for me. Let us write it down.
I am excited about the new project at work.
Me too, although the deadline worries me.
We can handle it if we divide the tasks well.
I heard that you are moving to another city.
Yes, I got a job offer that I could not refuse.
I will miss you, but I am happy for you.
Please keep in touch and visit when you can.
Would you mind lending me some money until Friday?
I can lend you twenty dollars, but I need it back on time.
Of course, I will pay you back on Friday morning.
Is there anything I can do to make this right?
Just be honest with me from now on.
I promise I will.
What do you think about the new restaurant downtown?
The food was good, but the service was slow.
I would love to try it sometime with you.
Let us go on Saturday evening.
I think we should keep this between the two of us.
Your secret is safe with me.
The meeting was longer than I expected.
Did they make a decision about the budget?
Not yet, they will vote next week.
I brought you some coffee, I hope you like it.
That is very kind of you, thank you.
I am sorry to hear about your grandmother.
Thank you. She was a wonderful person.
If you need anything at all, just call me.
I have a lot on my plate right now.
Maybe I can take one of your tasks off your hands.
That would be a huge help, thank you.
Could you please turn the music down a little?
Sure, I did not realize it was so loud.
We have different opinions, and that is okay.
I respect your view, even if I see it differently.
Let us find a solution that works for both of us.
I think a compromise is the best way forward.
Imagine you are a friendly neighbor who wants to help.
Your task is to act and speak as this person would.
Keep your words concise and natural.
Say LEAVE once your goal is achieved.
The scenario takes place at a coffee shop on a rainy morning.
Two old friends meet after many years apart.
A buyer and a seller negotiate the price of a used sofa.
Two roommates discuss who should pay the electricity bill.
A volunteer asks a stranger to support a local food bank.
Two coworkers plan a surprise party for their manager.
The other person's goal is unknown to you.
She is a teacher who enjoys painting on weekends.
He is a software engineer who loves hiking and board games.
They have known each other since high school.
Secret: he once lost a large sum of money gambling.
Secret: she is secretly planning to quit her job.
"""

_OPENERS = [
    "Hello {b}, do you have a moment?", "{b}, I wanted to ask you something.",
    "Good morning {b}! How are things?", "Excuse me {b}, can we talk about the rent?",
    "Hey {b}, are you coming to the party tonight?", "{b}, I think we need to talk.",
]
_REPLIES = [
    "Sure {a}, what is on your mind?", "Of course, {a}. I am listening.",
    "Not right now, {a}, I am a bit busy.", "I am doing fine, {a}. What about you?",
    "Maybe later, {a}. I need to finish this first.", "Yes, {a}, I will be there around eight.",
]


def default_corpus() -> list[str]:
    """The built-in English training text of the tiny tokenizers.

    A few hundred lines of social small talk, negotiation and prompt phrasing
    (including the protocol's ``Turn i: Name said:`` lines), so that common
    words of the demo's prompts become single tokens.
    """
    lines = [s for s in _LINES.splitlines() if s.strip()]
    for i, a in enumerate(_NAMES):
        b = _NAMES[(i * 5 + 3) % len(_NAMES)]
        opener = _OPENERS[i % len(_OPENERS)].format(a=a, b=b.split()[0])
        reply = _REPLIES[(i * 7) % len(_REPLIES)].format(a=a.split()[0], b=b)
        lines.append(f"Turn {2 * i}: {a} said: {opener}")
        lines.append(f"Turn {2 * i + 1}: {b} said: {reply}")
        lines.append(f"Imagine you are {a}, your task is to act/speak as {a} would, keeping in mind {a}'s social goal.")
        lines.append(f"{a}'s goal: Convince {b} to help with the move this weekend.")
        lines.append(f"{b}'s goal: Unknown")
    for t in range(16):
        lines.append(f"Turn {t}: {_NAMES[t % len(_NAMES)]} said: {lines[t]}")
    return lines


def train_tokenizer(corpus: list[str] | None = None, vocab_size: int = 2048, model_max_length: int = 4096):
    """A byte-level BPE ``PreTrainedTokenizerFast`` trained on the built-in corpus (+ ``corpus``).

    Like the Llama and Mistral tokenizers, it adds BOS when called with
    ``add_special_tokens=True`` (a template post-processor) and its chat
    template also writes BOS, so callers must not add a second one.
    """
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    text = default_corpus() + list(corpus or [])
    tok.train_from_iterator(text, trainer=trainer, length=len(text))
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token="<unk>",
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _model_config(arch: str, common: dict[str, Any], sliding_window: int | None) -> tuple[Any, type]:
    """The transformers config and model class of a tiny ``arch`` model."""
    from transformers import (
        Gemma3ForCausalLM,
        Gemma3TextConfig,
        LlamaConfig,
        LlamaForCausalLM,
        MistralConfig,
        MistralForCausalLM,
    )

    if arch == "llama":
        return LlamaConfig(**common), LlamaForCausalLM
    if arch == "gemma3":
        head_dim = common["hidden_size"] // common["num_attention_heads"]
        return (Gemma3TextConfig(sliding_window=sliding_window or 512, head_dim=head_dim,
                                 query_pre_attn_scalar=head_dim, **common), Gemma3ForCausalLM)
    return MistralConfig(sliding_window=sliding_window, **common), MistralForCausalLM


def build_tiny_model(
    out_dir: str | Path,
    arch: Literal["llama", "mistral", "gemma3"],
    n_layers: int,
    hidden_size: int,
    n_heads: int,
    n_kv_heads: int,
    intermediate_size: int,
    seed: int,
    corpus: list[str] | None = None,
    vocab_size: int = 2048,
    max_position_embeddings: int = 4096,
    initializer_range: float = 0.02,
    sliding_window: int | None = None,
) -> Path:
    """Write a seeded random-weight Llama/Mistral chat checkpoint into ``out_dir``.

    The model's vocabulary is the trained tokenizer's (at most ``vocab_size``
    entries: a small corpus may give fewer merges), so every id the model can
    sample decodes. Weights come from the library's own initialisation under
    ``torch.manual_seed(seed)`` inside a forked RNG (the caller's global RNG is
    untouched); ``initializer_range`` is the std of the normal init.
    ``sliding_window`` is Mistral's attention window (None: full attention, as
    in Mistral-7B v0.2/v0.3); for ``gemma3`` (Gemma-3's text model: every
    sixth block global, the others local) it is the local blocks' window
    (default 512, Gemma-3-270M's). Returns ``out_dir``.
    """
    from transformers import GenerationConfig

    if arch not in ("llama", "mistral", "gemma3"):
        raise ValueError(f"arch must be 'llama', 'mistral' or 'gemma3', got {arch!r}")
    if hidden_size % n_heads or n_heads % n_kv_heads:
        raise ValueError("hidden_size must be divisible by n_heads and n_heads by n_kv_heads")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    tokenizer = train_tokenizer(corpus, vocab_size=vocab_size, model_max_length=max_position_embeddings)
    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in (BOS, EOS, PAD)}
    config, cls = _model_config(arch, dict(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=intermediate_size,
        num_hidden_layers=n_layers, num_attention_heads=n_heads, num_key_value_heads=n_kv_heads,
        max_position_embeddings=max_position_embeddings, initializer_range=initializer_range, rms_norm_eps=1e-5,
        bos_token_id=ids[BOS], eos_token_id=ids[EOS], pad_token_id=ids[PAD], tie_word_embeddings=False,
    ), sliding_window)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls(config).to(torch.float32).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=ids[BOS], eos_token_id=ids[EOS], pad_token_id=ids[PAD], do_sample=True, temperature=0.7
    )
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)

    _record_build(out, tokenizer, corpus, {
        "arch": arch, "n_layers": n_layers, "hidden_size": hidden_size, "n_heads": n_heads, "n_kv_heads": n_kv_heads,
        "intermediate_size": intermediate_size, "seed": seed, "vocab_size_requested": vocab_size,
        "max_position_embeddings": max_position_embeddings, "initializer_range": initializer_range,
        "sliding_window": sliding_window})
    return out


def _record_build(out: Path, tokenizer: Any, corpus: list[str] | None, spec: dict[str, Any]) -> None:
    """Give the weights the usual file mode and write the build record (spec, vocabulary, file hashes)."""
    weights = sorted(p.name for p in out.glob("*.safetensors"))
    umask = os.umask(0)
    os.umask(umask)
    for name in weights:  # save_pretrained may leave a temp file's 0600 mode; use the usual umask
        os.chmod(out / name, 0o666 & ~umask)
    record = {
        "builder": "syncr2.simulation.tiny_models.build_tiny_model",
        **spec,
        "vocab_size": len(tokenizer),
        "extra_corpus_lines": len(corpus or []),
        "extra_corpus_sha256": hashlib.sha256("\n".join(corpus or []).encode()).hexdigest(),
        "weights_sha256": {name: _sha256(out / name) for name in weights},
        "tokenizer_sha256": _sha256(out / "tokenizer.json"),
        "torch": torch.__version__,
    }
    (out / BUILD_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


_SPEC_KEYS = {
    "arch", "n_layers", "hidden_size", "n_heads", "n_kv_heads", "intermediate_size", "seed",
    "corpus", "vocab_size", "max_position_embeddings", "initializer_range", "sliding_window", "tom_vocabulary",
}


def tom_corpus() -> list[str]:
    """Lines that make each ToM emotion and act word one token (a reply opens with the emotion,
    the act follows a space), so a tiny model can run the ToM condition (docs/protocol.md)."""
    from .tom import ACTS, EMOTIONS

    return [f"{e}. {a}. I see." for e in EMOTIONS for a in ACTS] * 5


def build_from_spec(spec: dict[str, Any], out_dir: str | Path) -> Path:
    """:func:`build_tiny_model` from a config dict such as ``models.<key>.build`` of the default config;
    ``tom_vocabulary: true`` adds :func:`tom_corpus` to the tokenizer's training text."""
    unknown = set(spec) - _SPEC_KEYS
    if unknown:
        raise ValueError(f"unknown tiny-model build keys {sorted(unknown)}; allowed: {sorted(_SPEC_KEYS)}")
    spec = dict(spec)
    if spec.pop("tom_vocabulary", False):
        spec["corpus"] = list(spec.get("corpus") or []) + tom_corpus()
    return build_tiny_model(out_dir, **spec)


def main(argv: list[str] | None = None) -> None:
    """``python -m syncr2.simulation.tiny_models OUT_DIR SPEC_JSON``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        raise SystemExit("usage: python -m syncr2.simulation.tiny_models OUT_DIR SPEC_JSON")
    print(build_from_spec(json.loads(args[1]), args[0]))


if __name__ == "__main__":
    main()
