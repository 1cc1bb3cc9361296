"""Learn a reviser from the model's own samples, then revise until a stop: what Reflexion
(methods/reflexion.py) and intrinsic self-correction (methods/self_correct.py) share.

Both papers run the same loop. A first attempt y_0; then, round after round, every problem whose
attempt does not satisfy a stop rule gets one more call, on a prompt that shows the problem, the
previous attempt and what was said about it:

    y_t = reviser(task.retry_prompt(x, y_{t-1}, feedback))      if not stop(x, y_{t-1})
    y_t = y_{t-1}                                               otherwise

feedback = task.feedback(x, y_{t-1}) (Reflexion: the oracle's words, about the visible examples
only on code), or "?" when the loop is told nothing (intrinsic self-correction, and Reflexion's
no_feedback arm): one prompt format for both. The papers differ only in the stop rule (the
hidden tests, the visible examples, never) and in whether feedback is given.

Neither base model has ever seen a retry prompt, so both files first teach one, the same way:
  (a) own_attempts: the base's greedy attempt and n samples at temperature T on training
      problems, each labelled by the oracle (the oracle labels TRAINING samples only);
  (b) retry_pairs: for each problem where one attempt is right, every attempt a gives
      (retry prompt with "?" -> a if a is right, else the right attempt) and, with feedback,
      every wrong a also gives (retry prompt with its feedback -> the right attempt);
  (c) learn_reviser: a copy of the base fine-tuned on those pairs (sft.finetune, masked
      cross-entropy on the new attempt only),
          L = - sum_{t in y'} log p(y'_t | retry_prompt(x, y, feedback), y'_<t);
  (d) run_loop: the loop above, from the base's greedy attempts (`start` makes the base, its
      reviser, the test problems and those first attempts: the start of both run_seeds).
A prompt must fit the model's block with room left for the answer: retry_prompt cuts the memory
(the feedback's end first, then the attempt's) and drops the non-ASCII bytes of a garbled
attempt, so that one character is one token.
"""
import copy
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

import numpy as np

from sample import generate, greedy
from sft import base_model, finetune

NO_FEEDBACK = "?"


# ---------------------------------------------------------------------------------------------
# The retry prompt

def prompt_limit(model, task):
    """Longest retry prompt: the block minus room for an answer (half the task's budget)."""
    return model.config.block_size - (task.max_new_tokens // 2 + 2)


def retry_prompt(task, prompt, previous, feedback, limit):
    """task.retry_prompt(prompt, previous, feedback) in at most `limit` characters (= tokens):
    the non-ASCII bytes of a garbled attempt (and of the feedback, which may quote it) are
    dropped, then the memory is cut from its end (the feedback first, then the attempt)."""
    previous, feedback = (s.encode("ascii", "ignore").decode() for s in (previous, feedback))
    excess = len(task.retry_prompt(prompt, previous, feedback)) - limit
    if excess > 0:
        cut = min(excess, len(feedback))
        feedback = feedback[:len(feedback) - cut]
        previous = previous[:max(0, len(previous) - (excess - cut))]
    return task.retry_prompt(prompt, previous, feedback)


def never(problem, attempt):
    """The stop rule of a loop that always revises."""
    return False


def oracle(task):
    """The oracle's stop rule: stop when the answer is right (the hidden tests pass)."""
    return lambda problem, attempt: task.check(problem, attempt).correct


# ---------------------------------------------------------------------------------------------
# (a)-(c): the reviser, learned from the model's own attempts

def own_attempts(model, task, problems, n_samples, temperature, seed):
    """(a) For each problem, the model's greedy attempt and n_samples samples at `temperature`,
    each with the oracle's label: a list (one per problem) of [(attempt, correct), ...]."""
    first, _ = greedy(model, task, problems)
    sampled = generate(model, [p.prompt for p in problems], n=n_samples,
                       max_new_tokens=task.max_new_tokens, temperature=temperature, seed=seed)
    return [[(a, task.check(p, a).correct) for a in [g] + ss]
            for p, g, ss in zip(problems, first, sampled)]


def retry_pairs(task, problems, attempts, limit, with_feedback, use_reference=False):
    """(b) (retry prompt -> a right attempt) pairs from labelled attempts. Problems without a
    right attempt give nothing (there is nothing of the model's own to learn from), unless
    use_reference (only for --quick, whose untrained tiny base solves nothing): then the
    reference answer stands in."""
    pairs = []
    for p, labelled in zip(problems, attempts):
        right = [a for a, ok in labelled if ok] or ([p.answer] if use_reference else [])
        if not right:
            continue
        for a, ok in labelled:
            if with_feedback and not ok:  # with feedback: only failing attempts are revised
                fb = task.feedback(p, a)
                pairs.append((retry_prompt(task, p.prompt, a, fb, limit), right[0]))
            pairs.append((retry_prompt(task, p.prompt, a, NO_FEEDBACK, limit),
                          a if ok else right[0]))
    return pairs


def learn_reviser(base, task, problems, n_samples, temperature, steps, batch_size, lr, seed,
                  with_feedback, use_reference=False, desc="reviser", progress=True):
    """(a) + (b) + (c): a copy of the base fine-tuned on the retry pairs of its own attempts
    (the base itself stays untouched). Returns (reviser, number of pairs, share of the
    attempts that were right, the loss per step)."""
    attempts = own_attempts(base, task, problems, n_samples, temperature, seed)
    pairs = retry_pairs(task, problems, attempts, prompt_limit(base, task), with_feedback,
                        use_reference)
    if not pairs:
        raise SystemExit("error: the base model solved none of the training problems, so "
                         "there is no right attempt of its own to learn a revision from")
    reviser = copy.deepcopy(base)
    losses = finetune(reviser, pairs, steps=steps, batch_size=batch_size, lr=lr,
                      warmup=max(1, steps // 10), seed=seed, desc=desc, progress=progress)
    share_right = float(np.mean([ok for labelled in attempts for _, ok in labelled]))
    return reviser, len(pairs), share_right, losses


def start(task, seed, device, quick, problems, train_problems, train_samples, temperature,
          steps, batch_size, lr, with_feedback, name):
    """Where both experiments start: the base model, its reviser learned from its own attempts
    on train_problems training problems, the test problems, and the base's greedy first attempt
    at each. Returns (base, reviser, test problems, first attempts). `name` is what the printed
    line calls the pairs ("repair" -> "repair pairs", "repairer loss")."""
    base = base_model(task, seed=seed, device=device, quick=quick)
    # training problems drawn with another seed than the base's (they may overlap in part: arith
    # has only 10,000 distinct 3-digit-by-1-digit products); the test split is never touched
    train = task.problems(train_problems, seed=1000 + seed, split="pool")
    reviser, n_pairs, share_right, losses = learn_reviser(
        base, task, train, train_samples, temperature, steps, batch_size, lr, seed,
        with_feedback, use_reference=quick, desc=f"{name}er")
    print(f"seed {seed}: {n_pairs} {name} pairs ({share_right:.0%} of the model's own training "
          f"attempts pass); {name}er loss {losses[0]:.3f} -> {np.mean(losses[-20:]):.3f}")
    test = task.problems(problems, seed=0, split="test")
    first, _ = greedy(base, task, test)
    return base, reviser, test, first


# ---------------------------------------------------------------------------------------------
# (d): the loop

def run_loop(reviser, task, problems, first, rounds, temperature, seed, stop, with_feedback):
    """Revise until a stop. Returns attempts[t][i], problem i's attempt after round t (round 0 =
    `first`). In round t every problem whose attempt fails stop(problem, attempt) gets one call
    at `temperature` (seed + t); an attempt that satisfies it is final and never revisited.
    with_feedback=False puts "?" where task.feedback would go."""
    limit = prompt_limit(reviser, task)
    attempts = [list(first)]
    for t in range(1, rounds + 1):
        current = list(attempts[-1])
        todo = [i for i, p in enumerate(problems) if not stop(p, current[i])]
        if todo:
            said = [task.feedback(problems[i], current[i]) if with_feedback else NO_FEEDBACK
                    for i in todo]
            prompts = [retry_prompt(task, problems[i].prompt, current[i], feedback, limit)
                       for i, feedback in zip(todo, said)]
            outs = generate(reviser, prompts, n=1, max_new_tokens=task.max_new_tokens,
                            temperature=temperature, seed=seed + t)
            for i, out in zip(todo, outs):
                current[i] = out[0]
        attempts.append(current)
    return attempts
