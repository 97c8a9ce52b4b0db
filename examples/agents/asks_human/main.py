"""An example agent that asks a person: it works a little (so the trace grows while you watch), saves its state,
asks for input through the requestInput hook, waits for the answer, logs it and submits it. On a forked branch it
starts from the state it was given (skipping the warm-up) and asks again, naming its plan.

Run it with `metadata: {"interactive": true}` so the request waits for a person (on a non-interactive run the
default input answers at once). Used by the web UI's end-to-end tests.
"""

import os
import time

from terrarium_hooks import Hooks, starting_state

STEPS = int(os.environ.get("ASKS_HUMAN_STEPS", "6"))
STEP_SECONDS = float(os.environ.get("ASKS_HUMAN_STEP_SECONDS", "0.5"))


def main():
    hooks = Hooks()
    task = hooks.getTask()
    state = starting_state()
    if state is None:
        hooks.log(f"Starting on {task.task_id}")
        with hooks.frame("warm-up"):
            for step in range(1, STEPS + 1):
                hooks.action({"type": "think", "step": step})
                time.sleep(STEP_SECONDS)
                hooks.observation({"step": step, "note": f"step {step} of {STEPS} done"})
        state = {"stepsDone": STEPS, "plan": "ask a person what to submit"}
        hooks.save_state(state)
        question = "What should I submit?"
    else:
        hooks.log(f"Resuming from a saved state: {state.get('plan')}")
        question = f"What should I submit? (plan: {state.get('plan')})"
    print("asking a person for the answer", flush=True)
    answer = hooks.get_input(question, default_input="100", poll_seconds=0.5)
    hooks.log(f"A person answered: {answer}")
    print(f"submitting {answer!r}", flush=True)
    hooks.submit(answer.strip())


if __name__ == "__main__":
    main()
