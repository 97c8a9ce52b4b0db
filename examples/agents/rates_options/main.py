"""An example agent that lets a person choose: it proposes two answers through the rateOptions hook, waits for a
person to rate them and pick one (the branch pauses meanwhile; the web UI shows the rating pane), and submits the
chosen answer. Used by the web UI's end-to-end tests.
"""

import time

from terrarium_hooks import Hooks


def main():
    hooks = Hooks()
    task = hooks.getTask()
    hooks.log(f"Two candidate answers for {task.task_id}; asking a person which to submit")
    options = [
        {"action": "submit 7", "description": "a guess"},
        {"action": "submit 100", "description": "the sum of the numbers"},
    ]
    requested = hooks.rate_options(options, description="Which answer should I submit?")
    chosen = requested["chosen"]
    while chosen is None:
        time.sleep(0.5)
        chosen = hooks.retrieve_ratings(requested["requestId"])
    answer = chosen["action"].split(" ", 1)[1]
    hooks.log(f"A person chose: {chosen['action']} (rated {chosen.get('rating')})")
    print(f"submitting {answer!r}", flush=True)
    hooks.submit(answer)


if __name__ == "__main__":
    main()
