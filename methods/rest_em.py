"""ReST-EM: a model trained on its own verified answers (Singh et al. 2023, "Beyond Human Data:
Scaling Self-Training for Problem-Solving with Language Models", arXiv 2312.06585).

The idea: the model already solves some training problems some of the time. Sample K answers
per training problem, keep the ones an oracle marks correct, and fine-tune on them. Repeat.
There is no human answer anywhere in the loop, only a checker. The paper reads this as EM for
RL with a binary "the answer was right" variable O:

    E-step:  D_i = { (x, y) : x in train problems, y ~ p_theta(. | x), r(x, y) = 1 }
             (at most `cap` correct samples kept per problem, so easy problems do not dominate)
    M-step:  theta_i = argmax_theta  sum_{(x, y) in D_i}  r(x, y) * log p_theta(y | x)
             trained FROM THE BASE MODEL theta_0, not from theta_{i-1}

With r in {0, 1} the M-step is plain SFT on the filtered set: `finetune` from methods/sft.py.

Arms (all start from the same cached base model of the seed):
  rest_em           restart every M-step from the base weights, as the paper does
  rest_em_continue  fine-tune the previous iterate instead (the paper found it transfers worse)
  rest_em_small     a training set a third the size (the paper's APPS regressed at iteration 2)
  sft_gold          the "human data" control: fine-tune the base on the reference answers of
                    the same training problems, with the same step budget

Metrics at each iteration (step 0 = the base model; the E-step of iteration i+1 reuses the
samples that measured `coverage` at step i):
  test_acc         greedy accuracy on held-out test problems
  train_acc        greedy accuracy on the arm's own training problems
  coverage         share of training problems with at least one correct sample among K
  kept             number of (problem, sample) pairs the M-step that made this model trained on
  pass@1/4/16      unbiased pass@k from 16 samples per test problem
  maj@16           accuracy of the majority answer of those 16 samples
  harder_test_acc  greedy accuracy one difficulty step above training (easy-to-hard transfer)

What was simplified, and why:
  - The paper trains each M-step "while reward improves on a validation set". Here an M-step is
    a fixed number of steps (--steps), the same for every arm, so the arms cost the same and a
    student can see overfitting instead of having it hidden by early stopping.
  - K=16 samples per problem instead of 32 (arith answers are short and the model's samples are
    mostly identical strings; 16 keep the default run inside its 5-minute CPU budget).
  - An arith answer is one number, so the correct samples of a problem are copies of the same
    string. The cap then just bounds how much weight one easy problem gets; it is still the
    paper's rule and still matters for that reason.
  - pass@k is measured at T=0.8 (as for the base models, tutorials/01_sft.md), not T=1.0/top-p.

Run:
  python methods/rest_em.py                      # arith, seed 0 (a few minutes on a CPU)
  python methods/rest_em.py --seeds 0,1,2        # what results/rest_em-arith.md was made with
  python methods/rest_em.py --task code --steps 400
  python methods/rest_em.py --quick              # tiny budget, same code path (for tests)

What the paper saw: a large gain at iteration 1, little after, a regression on a small problem
set. What you should see here (tutorials/06_rest_em.md has the 3-seed table): NO gain in greedy
test accuracy at any iteration (changes of either sign, within the noise of the test set), while
train accuracy climbs every iteration; the small set below its base at every iteration; pass@16
and coverage falling as the model grows surer of its own answers; and sft_gold no better than
rest_em, so more fine-tuning of this base buys nothing with either kind of data.
"""
import copy
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

import common
from sample import evaluate, generate
from sft import base_model, finetune
from verify import TASKS

FLAGS = dict(
    arms=("rest_em,rest_em_continue,rest_em_small,sft_gold", "comma-separated arms to run"),
    train_problems=(1800, "training problems (rest_em_small uses a third of them)", 3),
    iterations=(3, "E/M iterations per arm"),
    samples=(16, "K: samples per problem, E-step"),
    temperature=(0.7, "E-step temperature"),
    top_k=(40, "E-step top-k"),
    cap=(10, "correct samples kept per problem"),
    steps=(250, "fine-tuning steps per M-step"),
    batch_size=(64, "M-step batch size"),
    lr=(1e-3, "M-step peak learning rate"),
    warmup=(30, "M-step warm-up steps", 0),
    test_problems=(500, "test problems"),
    eval_samples=(16, "samples per test problem"),
    eval_temperature=(0.8, "temperature of the pass@k / maj@k samples"),
)
QUICK = dict(train_problems=30, test_problems=20, samples=4, eval_samples=4, steps=5,
             iterations=2)
ARMS = ("rest_em", "rest_em_continue", "rest_em_small", "sft_gold")


def warn(message):
    print(message, file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# E-step: sample, check, keep the correct ones

def filter_correct(task, problems, samples, cap):
    """Keep the samples the oracle marks correct, at most `cap` per problem.
    samples[i] is the list of K completions for problems[i]. Returns (pairs, coverage):
    pairs is a list of (prompt, completion), coverage the share of problems with >= 1 correct."""
    pairs, covered = [], 0
    for p, ss in zip(problems, samples):
        good = [s for s in ss if task.check(p, s).correct][:cap]
        covered += len(good) > 0
        pairs += [(p.prompt, s) for s in good]
    return pairs, covered / max(1, len(problems))


def sample_train(model, task, problems, samples, temperature, top_k, seed):
    """K = `samples` samples per training problem at the E-step's temperature and top-k."""
    return generate(model, [p.prompt for p in problems], n=samples,
                    max_new_tokens=task.max_new_tokens, temperature=temperature, top_k=top_k,
                    seed=seed)


# ---------------------------------------------------------------------------------------------
# M-step: fine-tune on the kept pairs, from a given starting model

def m_step(start, pairs, steps, batch_size, lr, warmup, seed, desc, progress=True):
    """A copy of `start` fine-tuned on `pairs` (start itself is left untouched)."""
    model = copy.deepcopy(start)
    finetune(model, pairs, steps=steps, batch_size=batch_size, lr=lr, warmup=warmup, seed=seed,
             desc=desc, progress=progress)
    return model


# ---------------------------------------------------------------------------------------------
# Evaluation

def test_metrics(model, task, test, harder, eval_samples, eval_temperature, seed):
    """Greedy test accuracy, pass@k and maj@n (self-consistency, checked by the oracle) from
    n = eval_samples samples per test problem, and greedy accuracy on the harder problems."""
    r = evaluate(model, task, test, n=eval_samples, temperature=eval_temperature, seed=seed,
                 ks=[k for k in (1, 4, 16) if k <= eval_samples], vote=True)
    return {"test_acc": r.pop("greedy_acc"), **r,
            "harder_test_acc": evaluate(model, task, harder)["greedy_acc"]}


# ---------------------------------------------------------------------------------------------
# The arms. Each returns {step: metrics} for its steps (step 0 is the base, measured once).

def run_em(arm, base, task, train, restart, iterations, cap, draw, measure, seed,
           base_samples=None, log=warn, **tune):
    """`iterations` E/M iterations from `base` on the problems `train`. draw(model, problems,
    seed) is the E-step's sampler, measure(model, problems) the metrics of a model (train_acc on
    `problems`, and the test metrics), `tune` the M-step's settings (steps, batch_size, lr, warmup,
    progress). restart: every M-step starts from the base (the paper), else from the last
    iterate. `base_samples`: the base's E-step samples on `train`, if the caller has them. An
    E-step that finds no correct sample is reported and leaves the policy unchanged."""
    model, curve = base, {}
    samples = base_samples or draw(model, train, seed * 1000)
    for it in range(1, iterations + 1):
        pairs, _ = filter_correct(task, train, samples, cap)  # E-step
        if not pairs:
            log(f"{arm} seed {seed} iteration {it}: the E-step found no correct sample among "
                f"{len(train)} x {len(samples[0])}; nothing to train on, the policy is unchanged")
        else:  # M-step: from the base weights, or from the last iterate for the `continue` arm
            start = base if restart else model
            model = m_step(start, pairs, seed=seed * 1000 + it, desc=f"{arm} seed {seed} iter {it}",
                           **tune)
        samples = draw(model, train, seed * 1000 + it)
        _, coverage = filter_correct(task, train, samples, cap)
        curve[it] = dict(kept=len(pairs), coverage=coverage, **measure(model, train))
    return curve


def run_sft_gold(base, train, measure, seed, **tune):
    """The "human data" control: one M-step on the reference answers of the same problems."""
    pairs = [(p.prompt, p.answer) for p in train]
    model = m_step(base, pairs, seed=seed, desc=f"sft_gold seed {seed}", **tune)
    return {1: dict(kept=len(pairs), **measure(model, train))}


# ---------------------------------------------------------------------------------------------

def run_seed(seed, task, device, quick, arms, train_problems, iterations, samples, temperature,
             top_k, cap, steps, batch_size, lr, warmup, test_problems, eval_samples,
             eval_temperature):
    progress = not quick
    base = base_model(task, seed=seed, device=device, quick=quick, progress=progress)
    # the training problems of this seed; the small set is the first third of them
    train = task.problems(train_problems, seed=1000 + seed, split="pool")
    small = train[:len(train) // 3]
    test = task.problems(test_problems, seed=0, split="test")
    harder = task.problems(test_problems, seed=0, split="test",
                           difficulty=task.default_difficulty + 1)

    def draw(model, problems, draw_seed):
        return sample_train(model, task, problems, samples, temperature, top_k, draw_seed)

    def measure(model, problems):
        return dict(train_acc=evaluate(model, task, problems)["greedy_acc"],
                    **test_metrics(model, task, test, harder, eval_samples, eval_temperature, seed))

    tune = dict(steps=steps, batch_size=batch_size, lr=lr, warmup=warmup, progress=progress)
    em = dict(task=task, iterations=iterations, cap=cap, draw=draw, measure=measure, seed=seed,
              **tune)
    # step 0: the base model, once (every arm starts from it)
    base_samples = draw(base, train, seed * 1000)
    metrics = dict(kept=0, coverage=filter_correct(task, train, base_samples, cap)[1],
                   **measure(base, train))
    common.show(f"seed {seed} base", metrics)
    rows = common.rows_of("base", 0, metrics)
    run = {
        "rest_em": lambda: run_em("rest_em", base, train=train, restart=True,
                                  base_samples=base_samples, **em),
        "rest_em_continue": lambda: run_em("rest_em_continue", base, train=train, restart=False,
                                           base_samples=base_samples, **em),
        "rest_em_small": lambda: run_em("rest_em_small", base, train=small, restart=True, **em),
        "sft_gold": lambda: run_sft_gold(base, train, measure, seed, **tune),
    }
    return rows + common.run_arms(run, arms, seed)


def main():
    args = common.parse_args(__doc__, FLAGS, QUICK, default_task="arith")
    common.comma_list(args.arms, ARMS, "arms")  # a bad arm fails now, not after a seed
    task = TASKS[args.task]
    if task.default_difficulty + 1 not in task.difficulties:
        common.fail(f"task {args.task} has no difficulty above {task.default_difficulty}")
    common.run_seeds("rest_em", args, run_seed, FLAGS)


if __name__ == "__main__":
    main()
