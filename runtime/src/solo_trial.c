/*
** Whether small work should stay on one thread: measured, not assumed
** (issue 11).
**
** Splitting a small loop or product over two threads pays when the two
** cores share data cheaply. On the 2-core guests this project runs on, the
** host sometimes places the two vCPUs so that they do not, and then the
** small MLP (784-64-10, batch 32) trains at 180-290k samples/s on two
** threads against 310-470k on one (Zen 4 guest, 2026-12-07; its parameters
** and activations, ~0.3 MB, move between the cores every step). Which case
** holds changes within minutes, so no threshold fixed in advance suits both.
**
** So the runtime tries both now and then: a trial is six windows, small
** work split (the team's thresholds) or solo (on the calling thread),
** ordered split-solo-solo-split-split-solo so that a steady drift cancels.
** A window's rate is the number of thread decisions (dn_pool_solo calls:
** one per loop or product the runtime starts, however it runs) per second.
** A training loop repeats the same ops every step, so that rate is in
** proportion to its steps per second. Small work goes solo until the next
** trial when each of the three pairs ran faster solo by more than NOISE.
** Results do not change: a task's result never depends on the threads that
** run it (pool.h).
*/
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "dropnet/parallel.h"
#include "pool.h"

/* A window lasts at least this long and this many decisions (the small MLP
   makes ~15 a step, the reference MLP ~25). */
#define WINDOW_NS 10000000
#define WINDOW_DECISIONS 600
/* A window longer than this saw the program do something else (evaluate,
   save, sleep): the trial is dropped and tried again later. */
#define WINDOW_MAX_NS 1000000000
/* Decisions before the first trial: the first steps pay one-time costs. */
#define WARMUP_DECISIONS 2000
/* Between trials: 3 s after a verdict that changed the way, twice as long
   as the last time (up to 48 s) after one that kept it, so that a program
   whose best way does not change spends little time in the slower one. */
#define HOLD_NS 3000000000u
#define HOLD_MAX_NS 48000000000u
/* Solo must be this much faster in every pair. */
#define NOISE 1.02
/* The clock is read every this many decisions. */
#define CLOCK_EVERY 16

static const bool window_solo[DN_SOLO_WINDOWS] = {false, true, true, false, false, true};

static struct {
  _Atomic uint64_t decisions;
  atomic_bool solo;       /* what dn_pool_solo says now */
  atomic_flag busy;       /* held by the thread that moves the trial on */
  atomic_int trials;      /* trials finished */
  int window;             /* the window running, or -1 between trials */
  uint64_t since_ns, since_decisions, next_trial_ns, hold_ns;
  bool decided_solo;      /* the last trial's verdict */
  double rate[DN_SOLO_WINDOWS];
} trial = {.window = -1, .hold_ns = HOLD_NS, .busy = ATOMIC_FLAG_INIT};

bool dn_solo_verdict(const double rate[DN_SOLO_WINDOWS]) {
  for (int w = 0; w < DN_SOLO_WINDOWS; w += 2) {
    double solo = window_solo[w] ? rate[w] : rate[w + 1], split = window_solo[w] ? rate[w + 1] : rate[w];
    if (!(solo > split * NOISE)) return false;
  }
  return true;
}

static void start_window(int w, uint64_t now, uint64_t decisions) {
  trial.window = w;
  trial.since_ns = now;
  trial.since_decisions = decisions;
  atomic_store_explicit(&trial.solo, w >= 0 ? window_solo[w] : trial.decided_solo, memory_order_relaxed);
}

/* Moves the trial on at decision number d (called by one thread at a time). */
static void advance(uint64_t d) {
  uint64_t now = dn_now_ns();
  if (trial.window < 0) {
    if (d >= WARMUP_DECISIONS && now >= trial.next_trial_ns) start_window(0, now, d);
    return;
  }
  uint64_t took = now - trial.since_ns, made = d - trial.since_decisions;
  if (took > WINDOW_MAX_NS) {   /* not a steady loop: keep the last verdict, try later */
    trial.next_trial_ns = now + trial.hold_ns;
    start_window(-1, now, d);
    return;
  }
  if (took < WINDOW_NS || made < WINDOW_DECISIONS) return;
  trial.rate[trial.window] = (double)made / (double)took;
  if (trial.window + 1 < DN_SOLO_WINDOWS) {
    start_window(trial.window + 1, now, d);
    return;
  }
  bool solo = dn_solo_verdict(trial.rate);
  if (solo != trial.decided_solo) trial.hold_ns = HOLD_NS;
  else if (trial.hold_ns < HOLD_MAX_NS / 2) trial.hold_ns *= 2;
  else trial.hold_ns = HOLD_MAX_NS;
  trial.decided_solo = solo;
  trial.next_trial_ns = now + trial.hold_ns;
  start_window(-1, now, d);
  atomic_fetch_add(&trial.trials, 1);
}

bool dn_pool_solo(void) {
  if (dn_get_num_threads() <= 1) return true;
  uint64_t d = atomic_fetch_add_explicit(&trial.decisions, 1, memory_order_relaxed) + 1;
  if (d % CLOCK_EVERY == 0 && !atomic_flag_test_and_set_explicit(&trial.busy, memory_order_acquire)) {
    advance(d);
    atomic_flag_clear_explicit(&trial.busy, memory_order_release);
  }
  return atomic_load_explicit(&trial.solo, memory_order_relaxed);
}

void dn_pool_set_solo(int verdict) {
  while (atomic_flag_test_and_set_explicit(&trial.busy, memory_order_acquire)) {
  }
  trial.decided_solo = verdict > 0;
  trial.next_trial_ns = verdict < 0 ? 0 : UINT64_MAX;
  trial.hold_ns = HOLD_NS;
  start_window(-1, 0, 0);
  if (verdict < 0 && atomic_load(&trial.decisions) < WARMUP_DECISIONS) atomic_store(&trial.decisions, WARMUP_DECISIONS);
  atomic_flag_clear_explicit(&trial.busy, memory_order_release);
}

int dn_pool_solo_trials(void) { return atomic_load(&trial.trials); }

uint64_t dn_pool_solo_decisions(void) { return atomic_load(&trial.decisions); }
