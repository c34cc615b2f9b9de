"""Task sets written in Python: run by ``--tasks-file examples/tasks/my_tasks.py`` (docs/task-sets.md).

The file is ordinary Python (it is your code, run as is). Every ``register_task_set`` call
makes a set usable by name (``--task-set times-table``) in every command; a file that registers
nothing instead gets each ``TaskSet`` it defines at module level registered.
"""

from interp.tasks import Task, TaskSet, get_task_set, register_task_set

# 1. Extend a built-in set. Registered sets never change: with_task returns a new set, which is
#    registered under a name of its own.
register_task_set(
    get_task_set("country")
    .with_task(Task("lower", lambda c: c["name"].lower(), "name in lower case"))
    .with_task(Task("initial", lambda c: c["name"][0], "first letter of the name"))
    .renamed("country-plus", "country + lower-case name + initial")
)


# 2. A new set. Inputs are any Python values; format_input writes one before the separator.
def _pairs() -> list[tuple[int, int]]:
    return [(a, b) for a in range(2, 10) for b in range(2, 10)]


register_task_set(
    TaskSet(
        name="times-table",
        description="a*b -> the product, the sum, the product's last digit",
        tasks=(
            Task("product", lambda p: str(p[0] * p[1])),
            Task("sum", lambda p: str(p[0] + p[1])),
            Task("last_digit", lambda p: str(p[0] * p[1] % 10), params={"modulus": 10}),
        ),
        inputs=_pairs,
        format_input=lambda p: f"{p[0]}*{p[1]}",
        separator="=",
        examples_per_task=6,
        default_tasks=("product", "sum"),
    )
)
