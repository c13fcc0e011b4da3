"""A step's own test support, used by the workshop from outside the step.

Where the workshop needs what a step's tests already have (a server run as a learner
runs it, a logged-in user, the reason a browser test is skipped), it loads the step's
testsupport/<name>.py by its path: one copy of that code, the step's, that the
workshop cannot let drift. A step never imports the workshop.
"""

import importlib.util
import sys
from types import ModuleType

from workshop.steps import Step, all_steps


def load_testsupport(name: str, step: Step | None = None) -> ModuleType:
    """`step`'s testsupport/<name>.py, or that of the last step that has one.

    The module must import nothing of its step (no `testsupport.` or `chat.`): it
    runs in the workshop's process, where no step is on the path.
    """
    if step is None:
        having = [
            s for s in all_steps() if (s.path / "testsupport" / f"{name}.py").is_file()
        ]
        if not having:
            raise LookupError(f"no step has testsupport/{name}.py")
        step = having[-1]
    module_name = f"{step.name}_testsupport_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            module_name, step.path / "testsupport" / f"{name}.py"
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # as an import does: dataclasses look it up
        spec.loader.exec_module(module)
    return sys.modules[module_name]
