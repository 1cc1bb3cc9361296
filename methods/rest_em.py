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
  python methods/rest_em.py                      # arith, seed 0 (about 2.5 minutes on a CPU)
  python methods/rest_em.py --seeds 0,1,2        # what results/rest_em-arith.md was made with
  python methods/rest_em.py --task code --steps 400
  python methods/rest_em.py --quick              # tiny budget, same code path (for tests)

What the paper saw: a large gain at iteration 1, little after, a regression on a small problem
set. What you should see here (tutorials/06_rest_em.md, 3 seeds): NO gain in greedy test
accuracy at any iteration (within about 2 points of the base on every seed), while train
accuracy climbs every iteration; the small set 2.8-5.8 points below its base; pass@16 and coverage
falling as the model grows surer of its own answers; and sft_gold no better than rest_em, so
more fine-tuning of this base buys nothing with either kind of data.
"""
import copy
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import common  # noqa: E402
from sample import generate, majority_vote, pass_at_k  # noqa: E402
from sft import base_model, finetune  # noqa: E402
from verify import TASKS  # noqa: E402

ARMS = ("rest_em", "rest_em_continue", "rest_em_small", "sft_gold")


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


def sample_train(model, task, problems, args, seed):
    """K samples per training problem at the E-step's temperature and top-k."""
    return generate(model, [p.prompt for p in problems], n=args.samples,
                    max_new_tokens=task.max_new_tokens, temperature=args.temperature,
                    top_k=args.top_k, seed=seed)


# ---------------------------------------------------------------------------------------------
# M-step: fine-tune on the kept pairs, from a given starting model

def m_step(start, pairs, args, seed, desc):
    """A copy of `start` fine-tuned on `pairs` (start itself is left untouched)."""
    model = copy.deepcopy(start)
    finetune(model, pairs, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
             warmup=args.warmup, seed=seed, desc=desc, progress=not args.quick)
    return model


# ---------------------------------------------------------------------------------------------
# Evaluation

def greedy_acc(model, task, problems):
    outs = generate(model, [p.prompt for p in problems], n=1,
                    max_new_tokens=task.max_tokens(problems[0].difficulty))
    return float(np.mean([task.check(p, o[0]).correct for p, o in zip(problems, outs)]))


def test_metrics(model, task, test, harder, args, seed):
    """Greedy test accuracy, pass@k and maj@n from n samples per test problem, and greedy
    accuracy on the harder problems."""
    n = args.eval_samples
    r = {"test_acc": greedy_acc(model, task, test)}
    samples = generate(model, [p.prompt for p in test], n=n, max_new_tokens=task.max_new_tokens,
                       temperature=args.eval_temperature, seed=seed)
    correct = [[task.check(p, s).correct for s in ss] for p, ss in zip(test, samples)]
    for k in (1, 4, 16):
        if k <= n:
            r[f"pass@{k}"] = float(np.mean([pass_at_k(n, sum(c), k) for c in correct]))
    # majority vote over the n sampled answers (self-consistency), checked by the oracle
    r[f"maj@{n}"] = float(np.mean([task.check(p, majority_vote(ss)).correct
                                   for p, ss in zip(test, samples)]))
    r["harder_test_acc"] = greedy_acc(model, task, harder)
    return r


# ---------------------------------------------------------------------------------------------
# One arm: iterate E and M steps, measuring after each

def run_arm(arm, base, task, train, test, harder, args, seed, base_samples=None, log=print):
    """Returns tidy rows {arm, step, metric, value} for steps 1..iterations (step 0 is the base,
    measured once by the caller). `base_samples`: the base's E-step samples on `train`, if the
    caller has them already. An E-step that finds no correct sample is reported and the policy
    is left unchanged, instead of crashing the run."""
    rows = []

    def record(step, metrics):
        for name, value in metrics.items():
            rows.append(dict(arm=arm, step=step, metric=name, value=round(float(value), 4)))

    if arm == "sft_gold":  # the control: the reference answers of the same problems, one M-step
        pairs = [(p.prompt, p.answer) for p in train]
        model = m_step(base, pairs, args, seed, desc=f"{arm} seed {seed}")
        record(1, dict(kept=len(pairs), train_acc=greedy_acc(model, task, train),
                       **test_metrics(model, task, test, harder, args, seed)))
        return rows

    model = base
    samples = base_samples or sample_train(model, task, train, args, seed=seed * 1000)
    for it in range(1, args.iterations + 1):
        pairs, _ = filter_correct(task, train, samples, args.cap)  # E-step
        if not pairs:
            log(f"{arm} seed {seed} iteration {it}: the E-step found no correct sample among "
                f"{len(train)} x {args.samples}; nothing to train on, the policy is unchanged")
        else:  # M-step: from the base weights, or from the last iterate for the `continue` arm
            start = model if arm == "rest_em_continue" else base
            model = m_step(start, pairs, args, seed=seed * 1000 + it,
                           desc=f"{arm} seed {seed} iter {it}")
        samples = sample_train(model, task, train, args, seed=seed * 1000 + it)
        _, coverage = filter_correct(task, train, samples, args.cap)
        record(it, dict(kept=len(pairs), coverage=coverage, train_acc=greedy_acc(model, task, train),
                        **test_metrics(model, task, test, harder, args, seed)))
    return rows


def main():
    parser = common.parser_for(__doc__, default_task="arith")
    parser.add_argument("--arms", default=",".join(ARMS), help="comma-separated arms to run")
    parser.add_argument("--train_problems", type=int, default=1800,
                        help="training problems (rest_em_small uses a third of them)")
    parser.add_argument("--iterations", type=int, default=3, help="E/M iterations per arm")
    parser.add_argument("--samples", type=int, default=16, help="K: samples per problem, E-step")
    parser.add_argument("--temperature", type=float, default=0.7, help="E-step temperature")
    parser.add_argument("--top_k", type=int, default=40, help="E-step top-k")
    parser.add_argument("--cap", type=int, default=10, help="correct samples kept per problem")
    parser.add_argument("--steps", type=int, default=250, help="fine-tuning steps per M-step")
    parser.add_argument("--batch_size", type=int, default=64, help="M-step batch size")
    parser.add_argument("--lr", type=float, default=1e-3, help="M-step peak learning rate")
    parser.add_argument("--warmup", type=int, default=30, help="M-step warm-up steps")
    parser.add_argument("--test_problems", type=int, default=500, help="test problems")
    parser.add_argument("--eval_samples", type=int, default=16, help="samples per test problem")
    parser.add_argument("--eval_temperature", type=float, default=0.8,
                        help="temperature of the pass@k / maj@k samples")
    args = parser.parse_args()
    seeds, device = common.check_args(parser, args)
    common.positive(parser, train_problems=args.train_problems, iterations=args.iterations,
                    samples=args.samples, temperature=args.temperature, top_k=args.top_k,
                    cap=args.cap, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                    test_problems=args.test_problems, eval_samples=args.eval_samples,
                    eval_temperature=args.eval_temperature)
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    if not arms or any(a not in ARMS for a in arms):
        parser.error(f"--arms must be a comma-separated subset of {', '.join(ARMS)}")
    task = TASKS[args.task]
    harder_d = task.default_difficulty + 1
    if harder_d not in task.difficulties:
        parser.error(f"task {args.task} has no difficulty above {task.default_difficulty}")
    if args.train_problems < 3:
        parser.error("--train_problems must be >= 3 (the small arm uses a third)")
    if args.quick:
        args.train_problems, args.test_problems = 30, 20
        args.samples, args.eval_samples, args.steps, args.iterations = 4, 4, 5, 2

    test = task.problems(args.test_problems, seed=0, split="test")
    harder = task.problems(args.test_problems, seed=0, split="test", difficulty=harder_d)
    rows, start = [], time.time()
    for seed in seeds:
        t0 = time.time()
        base = base_model(args.task, seed=seed, device=device, quick=args.quick)
        # the training problems of this seed; the small set is the first third of them
        train = task.problems(args.train_problems, seed=1000 + seed, split="train")
        small = train[:len(train) // 3]
        # step 0: the base model, once (every arm starts from it)
        samples = sample_train(base, task, train, args, seed=seed * 1000)
        _, coverage = filter_correct(task, train, samples, args.cap)
        base_row = dict(kept=0, coverage=coverage, train_acc=greedy_acc(base, task, train),
                        **test_metrics(base, task, test, harder, args, seed))
        seed_rows = [dict(arm="base", step=0, metric=k, value=round(float(v), 4))
                     for k, v in base_row.items()]
        for arm in arms:
            arm_train = small if arm == "rest_em_small" else train
            seed_rows += run_arm(arm, base, task, arm_train, test, harder, args, seed,
                                 base_samples=samples if arm_train is train else None,
                                 log=lambda msg: print(msg, file=sys.stderr))
        rows += [dict(r, seed=seed) for r in seed_rows]
        print(f"seed {seed} done in {time.time() - t0:.0f} s")
        config = {k: v for k, v in vars(args).items() if k not in ("seeds", "device", "quick")}
        config["harder_difficulty"] = harder_d
        table = common.write_results("rest_em", args.task, seeds[:seeds.index(seed) + 1], config,
                                     rows, time.time() - start, quick=args.quick)
    print(table)


if __name__ == "__main__":
    main()
