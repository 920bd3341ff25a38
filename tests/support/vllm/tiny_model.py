"""Build a tiny Llama and its tokenizer for vLLM's CPU server (run with the vLLM venv's interpreter).

    python tests/support/vllm/tiny_model.py --out DIR [--seed 0] [--says bakery]

A byte-level BPE tokenizer (the ``tokenizers`` library, ~800 tokens, ChatML special tokens and a chat
template) trained on generated text, and a randomly initialised ``LlamaForCausalLM`` (hidden 128, 2
layers, 2 heads of 64, float32; ~300k parameters) saved with ``save_pretrained``. No hub access.

The transformer's weights are random, with one deliberate twist so that tests can tell a grounded
answer from a hallucinated one: every token embedding shares a large constant component, so the final
hidden state is nearly the same whatever the context, and two rows of the output layer are set along
it. Greedy decoding then ranks the closing quote ``"`` first and `` <says>`` second everywhere: under a
JSON schema every free string the model writes is exactly `` <says>`` (the quote is not allowed before
the first character), while structure and enum ids come from the grammar. The model therefore states
one category about every item: true for items of that category, a hallucination for any other.
This file imports only torch, transformers and tokenizers (none of the project).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
                 "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
WORDS = ("a", "an", "and", "are", "as", "at", "be", "because", "by", "for", "from", "good", "great", "has",
         "have", "in", "is", "it", "its", "like", "matches", "of", "on", "or", "our", "pick", "picks",
         "popular", "price", "priced", "recently", "right", "now", "search", "similar", "so", "that",
         "the", "this", "to", "value", "with", "you", "your", "browsed", "looked", "session", "item",
         "items", "choice", "nice", "new", "fresh", "organic", "loaf", "bread", "milk", "cheese", "coffee",
         "tea", "apple", "berries", "pasta", "rice", "soap", "shampoo", "deluxe", "classic", "title",
         "category", "reason")


def corpus(rng: random.Random, says: str, n: int = 4000) -> list[str]:
    lines = []
    for i in range(n):
        ws = [rng.choice(WORDS) for _ in range(rng.randint(3, 12))]
        if i % 3 == 0:
            ws.insert(rng.randrange(len(ws) + 1), says)
        sku = f"SKU-{rng.randrange(1_000_000):06d}"
        price = f"{rng.uniform(0.5, 99):.2f}"
        lines.append(json.dumps({"items": [{"item_id": sku, "reason": " ".join(ws)}], "price": price}))
    return lines


def build_tokenizer(rng: random.Random, says: str, vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(rng, says), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", unk_token="<|endoftext|>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def single_token(fast, text: str) -> int:
    ids = fast.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        raise SystemExit(f"{text!r} is not one token of the tokenizer: {fast.convert_ids_to_tokens(ids)}")
    return ids[0]


def build(out: Path, seed: int, says: str, vocab_size: int = 800) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    rng = random.Random(seed)
    torch.manual_seed(seed)
    fast = build_tokenizer(rng, says, vocab_size)
    quote, word = single_token(fast, '"'), single_token(fast, " " + says)
    cfg = LlamaConfig(vocab_size=len(fast), hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2, intermediate_size=256, max_position_embeddings=2048,
                      bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
                      pad_token_id=fast.pad_token_id, tie_word_embeddings=False, torch_dtype="float32")
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        constant = torch.randn(cfg.hidden_size)
        # token identity keeps a random part (std 0.001) too small to move the steered ranking
        model.model.embed_tokens.weight.mul_(0.05).add_(constant * (4.0 / constant.norm()))
        # The final hidden state over random contexts: nearly constant by construction; measured, not assumed.
        probe = torch.randint(0, len(fast), (8, 96), generator=torch.Generator().manual_seed(seed))
        hidden = model.model(input_ids=probe).last_hidden_state.reshape(-1, cfg.hidden_size)
        h = hidden.mean(0)
        unit = h / h.norm() ** 2
        model.lm_head.weight[quote] = 12.0 * unit
        model.lm_head.weight[word] = 9.0 * unit
        logits = model(input_ids=probe).logits.reshape(-1, len(fast))
        top2 = logits.topk(2, dim=-1).indices
        if not (bool((top2[:, 0] == quote).all()) and bool((top2[:, 1] == word).all())):
            raise SystemExit("the steered ranking does not hold in every probed context")
        rest = logits.clone()
        rest[:, [quote, word]] = float("-inf")
        margin = float((logits[:, word] - rest.max(-1).values).min())
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    fast.save_pretrained(out)
    params = sum(p.numel() for p in model.parameters())
    print(json.dumps({"out": str(out), "vocab": len(fast), "params": params, "quote": quote, "says": word,
                      "min_margin": round(margin, 3)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--says", default="bakery")
    args = ap.parse_args()
    build(args.out, args.seed, args.says)


if __name__ == "__main__":
    main()
