"""Tests for hello_world, run inside a task environment: `terrarium task test <environment>`.

Task Standard convention: the fixtures ``task_family`` (the TaskFamily class), ``task_name`` and
``task`` (the task's dict from get_tasks) come from the test runner's plugin, and
``@pytest.mark.task_standard_tasks([...])`` limits a test to the named tasks.
"""

import os

import pytest


def test_every_task_has_instructions(task_family, task_name, task):
    instructions = task_family.get_instructions(task)
    assert "Task: " in instructions


@pytest.mark.task_standard_tasks(["sum"])
def test_sum_scores_the_right_answer_1(task_family, task):
    assert task_family.score(task, "100") == 1.0
    assert task_family.score(task, " 100\n") == 1.0
    assert task_family.score(task, "99") == 0.0


@pytest.mark.task_standard_tasks(["secret"])
def test_start_wrote_the_secret_for_the_agent(task_family, task):
    path = "/home/agent/secret.txt"
    assert os.path.exists(path)
    with open(path) as f:
        assert task_family.score(task, f.read()) == 1.0


@pytest.mark.task_standard_tasks(["haiku"])
def test_haiku_is_scored_manually(task_family, task):
    assert task_family.score(task, "anything") is None
