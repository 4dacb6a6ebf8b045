"""Batched caption decoding: greedy, beam search with a length penalty, and nucleus (top-p)
sampling with a seeded generator. Every method feeds the decoder one new token per step and
lets its state carry the rest (the key/value cache); `cache=False` recomputes the whole prefix
at every step instead, which only the benchmark uses, to show what the cache saves."""
from __future__ import annotations

import torch

from ...errors import BadInput
from ...models.captioner import Captioner


def _next_logits(model: Captioner, state: dict, tokens: torch.Tensor, image: torch.Tensor, cache: bool):
    if cache:
        return model.decoder.step(tokens[:, -1:], state)[:, -1], state
    fresh = model.decoder.start(image, cache=False)
    return model.decoder.step(tokens, fresh)[:, -1], fresh


def _finish(model: Captioner, tokens: torch.Tensor) -> list[str]:
    return [model.tokenizer.decode(row.tolist()) for row in tokens[:, 1:]]


@torch.no_grad()
def generate(model: Captioner, pixels: torch.Tensor, method: str = "greedy", beam: int = 3,
             length_penalty: float = 0.6, top_p: float = 0.9, seed: int = 0, max_length: int | None = None,
             cache: bool = True) -> list[str]:
    """One caption per image."""
    if method == "beam":
        return beam_search(model, pixels, beam, length_penalty, max_length)
    if method not in ("greedy", "top-p"):
        raise BadInput(f"unknown decoding {method!r}: use greedy, beam or top-p")
    config = model.config
    eot, length = config.towers.text.eot_token_id, max_length or config.towers.text.context_length
    image = model.encode(pixels)
    state = model.decoder.start(image, cache=cache)
    tokens = torch.full((len(pixels), 1), model.tokenizer.sot_token_id, dtype=torch.long, device=pixels.device)
    done = torch.zeros(len(pixels), dtype=torch.bool, device=pixels.device)
    generator = torch.Generator(device=pixels.device).manual_seed(seed)
    for _ in range(length - 1):
        logits, state = _next_logits(model, state, tokens, image, cache)
        if method == "greedy":
            chosen = logits.argmax(dim=-1)
        else:
            chosen = _nucleus(logits, top_p, generator)
        chosen = torch.where(done, torch.full_like(chosen, eot), chosen)
        tokens = torch.cat([tokens, chosen[:, None]], dim=1)
        done |= chosen == eot
        if bool(done.all()):
            break
    return _finish(model, tokens)


def _nucleus(logits: torch.Tensor, top_p: float, generator: torch.Generator) -> torch.Tensor:
    """A sample from the smallest set of tokens whose probability reaches top_p."""
    probs, order = logits.softmax(dim=-1).sort(dim=-1, descending=True)
    outside = probs.cumsum(dim=-1) - probs >= top_p  # the most likely token always stays
    probs = probs.masked_fill(outside, 0.0)
    picked = torch.multinomial(probs / probs.sum(dim=-1, keepdim=True), 1, generator=generator)
    return order.gather(1, picked).squeeze(1)


@torch.no_grad()
def beam_search(model: Captioner, pixels: torch.Tensor, beam: int = 3, length_penalty: float = 0.6,
                max_length: int | None = None) -> list[str]:
    """The best of `beam` hypotheses per image by log-probability / ((5 + length) / 6) ** alpha
    (Wu et al., 2016), all images' beams decoded as one batch."""
    config = model.config
    eot, length = config.towers.text.eot_token_id, max_length or config.towers.text.context_length
    n, device = len(pixels), pixels.device
    image = model.encode(pixels).repeat_interleave(beam, dim=0)
    state = model.decoder.start(image)
    tokens = torch.full((n * beam, 1), model.tokenizer.sot_token_id, dtype=torch.long, device=device)
    scores = torch.zeros(n, beam, device=device)
    scores[:, 1:] = float("-inf")  # all beams start identical: keep one
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(n)]
    for _ in range(1, length):
        logits = model.decoder.step(tokens[:, -1:], state)[:, -1]
        vocab = logits.shape[-1]
        candidates = (scores.view(-1, 1) + logits.log_softmax(dim=-1)).view(n, beam * vocab)
        best, flat = candidates.topk(2 * beam, dim=1)  # room for those that end here
        rows, next_tokens, next_scores = [], [], []
        for i in range(n):
            kept = 0
            for score, index in zip(best[i].tolist(), flat[i].tolist()):
                origin, token = divmod(index, vocab)
                if score == float("-inf"):
                    continue
                if token == eot:
                    sequence = tokens[i * beam + origin, 1:].tolist()
                    finished[i].append((score / ((5 + len(sequence) + 1) / 6) ** length_penalty, sequence))
                    continue
                rows.append(i * beam + origin)
                next_tokens.append(token)
                next_scores.append(score)
                kept += 1
                if kept == beam:
                    break
            while kept < beam:  # too few live hypotheses: pad with dead ones
                rows.append(i * beam)
                next_tokens.append(eot)
                next_scores.append(float("-inf"))
                kept += 1
        index = torch.tensor(rows, device=device)
        state = model.decoder.reorder(state, index)
        tokens = torch.cat([tokens[index], torch.tensor(next_tokens, device=device)[:, None]], dim=1)
        scores = torch.tensor(next_scores, device=device).view(n, beam)
        # Done once every image's best finished hypothesis beats the best any live one could still
        # reach: log-probabilities only fall, and the penalty divides by at most lp(length).
        best_case = scores.max(dim=1).values / ((5 + length) / 6) ** length_penalty
        if all(f and max(s for s, _ in f) >= best_case[i].item() for i, f in enumerate(finished)):
            break
    results = []
    for i in range(n):
        pool = finished[i] or [(scores[i, b].item(), tokens[i * beam + b, 1:].tolist()) for b in range(beam)]
        results.append(model.tokenizer.decode(max(pool, key=lambda p: p[0])[1]))
    return results
