/**
 * The pytest plugin `terrarium task test` loads inside a task environment. It follows the Task Standard's test
 * convention (METR's `metr_task_standard` pytest plugin): tests in `<family>_test.py` (or any test_*.py / *_test.py
 * of the family) take the fixtures `task_family` (the TaskFamily class), `task_name` and `task` (the task's dict),
 * and `@pytest.mark.task_standard_tasks(["a", "b"])` limits a test to the named tasks (others skip it).
 *
 * Kept as text here (not in python/) because it is written into the sandbox at test time, like a submission.
 */
export const PYTEST_PLUGIN_MODULE = 'terrarium_task_standard_pytest';

export const PYTEST_PLUGIN_SOURCE = `"""Task Standard fixtures for pytest (written by Terrarium's \`task test\`)."""
import importlib

import pytest


def pytest_addoption(parser):
    parser.addoption("--task-family-name", action="store", default=None, help="the task family's module name")
    parser.addoption("--task-name", action="store", default=None, help="the task this environment runs")


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "task_standard_tasks(task_names): run the test only in environments of the named tasks",
    )


def pytest_runtest_setup(item):
    marker = item.get_closest_marker("task_standard_tasks")
    if marker is None:
        return
    names = marker.args[0] if marker.args else []
    current = item.config.getoption("--task-name")
    if current not in names:
        pytest.skip("only for task(s) {}; this environment runs {}".format(", ".join(names), current))


@pytest.fixture
def task_family(request):
    name = request.config.getoption("--task-family-name")
    if not name:
        raise pytest.UsageError("--task-family-name is required")
    return importlib.import_module(name).TaskFamily


@pytest.fixture
def task_name(request):
    return request.config.getoption("--task-name")


@pytest.fixture
def task(task_family, task_name):
    tasks = task_family.get_tasks()
    if task_name not in tasks:
        raise KeyError("task {!r} is not in get_tasks(): {}".format(task_name, ", ".join(tasks)))
    return tasks[task_name]
`;

/** Counts from pytest's final summary line ("2 passed, 1 skipped in 0.12s"). */
export interface PytestSummary {
  passed: number;
  failed: number;
  skipped: number;
  errors: number;
}

export function parsePytestSummary(output: string): PytestSummary {
  const summary = { passed: 0, failed: 0, skipped: 0, errors: 0 };
  const lines = output.trimEnd().split('\n');
  const last = [...lines].reverse().find((line) => /\b(passed|failed|skipped|error|errors|no tests ran)\b/.test(line));
  if (!last) return summary;
  for (const match of last.matchAll(/(\d+) (passed|failed|skipped|errors?|xfailed|xpassed)/g)) {
    const count = Number(match[1]);
    const kind = match[2]!;
    if (kind === 'passed' || kind === 'xpassed') summary.passed += count;
    else if (kind === 'failed') summary.failed += count;
    else if (kind === 'skipped' || kind === 'xfailed') summary.skipped += count;
    else summary.errors += count;
  }
  return summary;
}
