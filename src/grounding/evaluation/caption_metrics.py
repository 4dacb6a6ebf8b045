"""Caption metrics as the COCO caption evaluation defines them, on whitespace-tokenised,
lowercased text: corpus BLEU-1..4 (clipped n-gram precision, brevity penalty against the
closest reference length), ROUGE-L (longest common subsequence F-measure with beta 1.2, best
precision and best recall over the references) and CIDEr-D (tf-idf n-gram cosine for n = 1..4,
counts clipped by the reference's, a Gaussian penalty on length difference, sigma 6, times 10).
Inputs map an example id to its references and to a one-element list holding its candidate."""
from __future__ import annotations

import math
from collections import Counter

TINY, SMALL = 1e-15, 1e-9  # the reference implementation's guards against log(0) and 0/0


def ngrams(words: list[str], n: int) -> Counter:
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def bleu(references: dict, candidates: dict, max_n: int = 4) -> list[float]:
    """Corpus BLEU-1 .. BLEU-max_n."""
    correct, guessed = [0] * max_n, [0] * max_n
    hyp_len = ref_len = 0
    for key, (candidate,) in candidates.items():
        words = candidate.split()
        refs = [r.split() for r in references[key]]
        hyp_len += len(words)
        # the closest reference length; a tie goes to the shorter
        ref_len += min((abs(len(r) - len(words)), len(r)) for r in refs)[1]
        for n in range(1, max_n + 1):
            counts = ngrams(words, n)
            most = Counter()
            for r in refs:
                most |= ngrams(r, n)
            correct[n - 1] += sum(min(c, most[g]) for g, c in counts.items())
            guessed[n - 1] += max(len(words) - n + 1, 0)
    scores, product = [], 1.0
    ratio = (hyp_len + TINY) / (ref_len + SMALL)
    brevity = math.exp(1 - 1 / ratio) if ratio < 1 else 1.0
    for n in range(max_n):
        product *= (correct[n] + TINY) / (guessed[n] + SMALL)
        scores.append(product ** (1 / (n + 1)) * brevity)
    return scores


def _lcs(a: list[str], b: list[str]) -> int:
    row = [0] * (len(b) + 1)
    for x in a:
        previous = 0
        for j, y in enumerate(b, 1):
            previous, row[j] = row[j], previous + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def rouge_l(references: dict, candidates: dict, beta: float = 1.2) -> float:
    scores = []
    for key, (candidate,) in candidates.items():
        words = candidate.split()
        lcs = [_lcs(words, r.split()) for r in references[key]]
        precision = max(l / len(words) for l in lcs) if words else 0.0
        recall = max(l / len(r.split()) for l, r in zip(lcs, references[key]))
        if precision and recall:
            scores.append((1 + beta ** 2) * precision * recall / (recall + beta ** 2 * precision))
        else:
            scores.append(0.0)
    return sum(scores) / len(scores)


def cider_d(references: dict, candidates: dict, max_n: int = 4, sigma: float = 6.0) -> float:
    keys = list(candidates)
    df = Counter()
    for key in keys:
        df.update({g for r in references[key] for n in range(1, max_n + 1) for g in ngrams(r.split(), n)})
    log_images = math.log(float(len(keys)))

    def vector(sentence: str):
        words = sentence.split()
        vec = [{} for _ in range(max_n)]
        for n in range(1, max_n + 1):
            for g, tf in ngrams(words, n).items():
                vec[n - 1][g] = tf * (log_images - math.log(max(1.0, df[g])))
        norms = [math.sqrt(sum(v * v for v in vn.values())) for vn in vec]
        return vec, norms, max(len(words) - 1, 0)  # length as the reference counts it: bigrams

    total = 0.0
    for key in keys:
        hyp, hyp_norm, hyp_len = vector(candidates[key][0])
        per_ref = []
        for r in references[key]:
            ref, ref_norm, ref_len = vector(r)
            sims = []
            for n in range(max_n):
                value = sum(min(v, ref[n].get(g, 0.0)) * ref[n].get(g, 0.0) for g, v in hyp[n].items())
                if hyp_norm[n] and ref_norm[n]:
                    value /= hyp_norm[n] * ref_norm[n]
                sims.append(value * math.exp(-((hyp_len - ref_len) ** 2) / (2 * sigma ** 2)))
            per_ref.append(sum(sims) / max_n)
        total += 10.0 * sum(per_ref) / len(per_ref)
    return total / len(keys)
