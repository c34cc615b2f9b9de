"""interp: a mechanistic-interpretability toolkit for task superposition in language models.

Data flows one way: task spec → prompts → model run → cache → analysis table → figure → report.
The most used entry points are re-exported here.
"""

from interp.models import LoadedModel, load_model
from interp.prompts import Prompt, build_prompts
from interp.scoring import score_prompts
from interp.tasks import Task, TaskSet, get_task_set

__all__ = ["LoadedModel", "Prompt", "Task", "TaskSet", "build_prompts", "get_task_set", "load_model", "score_prompts"]
