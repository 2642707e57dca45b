"""planbox's runner: runs the script that arrives on stdin, after loading the variables its
step's dependencies left, and then saves the variables it leaves for the steps after it.

stdin is the script, optionally preceded by one header line from the host:
    #planbox {"step": "monthly", "save": true, "cap": 268435456,
              "load": [{"file": "/state/01-load.pkl", "step": "load"}]}
Without the header (planbox exec) the script simply runs.

The state lives in /out/.planbox-state/: state.pkl, a stream of (name, set_by, pickle bytes)
records, and (name, set_by, "module:qualname", "import") records for what the script imported
(modules, and functions and classes of installed modules), which the next step imports again
by name; and state.json, the description the host reads (it never unpickles anything).
"""

import builtins
import hashlib
import importlib
import json
import os
import keyword
import pickle
import re
import shutil
import sys
import threading
import traceback
import types

STATE_DIR = "/out/.planbox-state"
# What the host reads is bounded here too, and again on the host.
TEXT_CAP = 300
MAX_COLUMNS = 40
MAX_VARIABLES = 100
SAMPLE_ROWS = 3
# The host refuses a description past 256 KiB; the runner stays well under it.
DESCRIPTION_BUDGET = 160 * 1024
IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,79}\Z")


def main():
    raw = sys.stdin.buffer.read()
    header = {}
    if raw.startswith(b"#planbox "):
        line, _, raw = raw.partition(b"\n")
        header = json.loads(line[len(b"#planbox "):].decode("utf-8"))
    # As plain `python3 -` has them: the script's own folder first on the path.
    sys.argv[:] = ["-"]
    sys.path[0] = ""
    module = types.ModuleType("__main__")
    module.__dict__["__builtins__"] = builtins
    # Pickles name the script's objects after __main__: the script's module must be it.
    sys.modules["__main__"] = module
    namespace = module.__dict__
    try:
        loaded = load(header.get("load", []), namespace)
    except Exception:
        sys.stderr.write(
            "planbox could not load the variables an earlier step left:\n"
            + traceback.format_exc(limit=-2)
        )
        return 70
    try:
        code = compile(raw, "<stdin>", "exec")
    except SyntaxError:
        traceback.print_exc(limit=0)
        return 1
    code_exit = 0
    try:
        exec(code, namespace)
    except SystemExit as stop:
        code_exit = exit_code(stop.code)
    except KeyboardInterrupt:
        traceback.print_exc()
        return 130
    except BaseException as err:
        # The traceback from the script's own frames on: the runner's frame is no news.
        tb = err.__traceback__.tb_next if err.__traceback__ else None
        traceback.print_exception(type(err), err, tb)
        return 1
    # Threads the script left running finish before its variables are read.
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    flush()
    if code_exit == 0 and header.get("save"):
        save(namespace, loaded, header.get("step", ""), int(header.get("cap", 0)))
    return code_exit


def exit_code(code):
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    sys.stderr.write(f"{code}\n")
    return 1


def flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def load(entries, namespace):
    """Load each dependency's state in plan order: a later one wins a name, except that a
    value a dependency only passed through never replaces one another dependency set."""
    loaded = {}
    for entry in entries:
        with open(entry["file"], "rb") as source:
            while True:
                try:
                    record = pickle.load(source)
                except EOFError:
                    break
                name, set_by, data = record[:3]
                set_by = set_by or entry["step"]
                passed_through = set_by != entry["step"]
                if name in loaded and passed_through and loaded[name][0] != set_by:
                    continue
                if record[3:] == ("import",):
                    try:
                        value = imported(data)
                    except Exception as err:
                        sys.stderr.write(f"planbox: could not import {name} ({data}) again: {err}\n")
                        continue
                    data = data.encode("utf-8")
                else:
                    value = pickle.loads(data)
                namespace[name] = value
                loaded[name] = (set_by, hashlib.sha256(data).hexdigest())
    return loaded


def imported(path):
    """The module, or the module's attribute, that `path` ("module" or "module:qualname") names."""
    module, _, qualname = path.partition(":")
    value = importlib.import_module(module)
    for part in qualname.split(".") if qualname else []:
        value = getattr(value, part)
    return value


def import_path(value):
    """How the next script imports `value` again ("module" or "module:qualname"), or None
    when it is no module or no function or class of an installed module."""
    try:
        if isinstance(value, types.ModuleType):
            path = value.__name__
        elif isinstance(value, (types.FunctionType, types.BuiltinFunctionType, type)):
            module = getattr(value, "__module__", None)
            qualname = getattr(value, "__qualname__", "")
            if not module or module == "__main__" or "<" in qualname:
                return None
            path = f"{module}:{qualname}"
        else:
            return None
        if path.split(":")[0] == "__main__" or imported(path) is not value:
            return None
        return path
    except Exception:
        return None


def skip_reason(name, value):
    """Why a variable is not saved, or None."""
    if name.startswith("_"):
        return "private"
    if not IDENTIFIER.match(name) or keyword.iskeyword(name):
        return "its name is not a plain ASCII identifier of at most 80 characters"
    if isinstance(value, types.ModuleType):
        return "a module planbox cannot import again: import it again"
    if isinstance(value, (types.FunctionType, types.BuiltinFunctionType, types.MethodType, type)):
        return "a function or class: define it again where it is needed"
    kind = type(value)
    if kind.__module__ == "__main__":
        return "an object of a class the script defined: keep its data in a DataFrame, dict or list"
    module = kind.__module__ or ""
    if module.startswith("matplotlib"):
        return "a chart object: save the chart with plt.savefig in the step that draws it"
    if hasattr(value, "read") and hasattr(value, "close") and not module.startswith(("pandas", "numpy")):
        return "an open file or stream: keep what was read from it instead"
    return None


def save(namespace, loaded, step, cap):
    # Whatever the script put here itself is not its state.
    shutil.rmtree(STATE_DIR, ignore_errors=True)
    os.makedirs(STATE_DIR, exist_ok=True)
    try:
        description = pickle_all(namespace, loaded, step, cap)
    except OSError as err:
        # The output folder is full: nothing is kept, and the host says why.
        try:
            os.remove(os.path.join(STATE_DIR, "state.pkl"))
        except OSError:
            pass
        description = {"format": 1, "variables": [], "skipped": [],
                       "too_large": {"bytes": cap + 1, "cap": cap, "largest": f"({type(err).__name__})"}}
    write_description(description)


def write_description(description):
    text = json.dumps(description, ensure_ascii=True)
    # Past the budget, the samples go first, then the columns.
    for field in ("sample", "columns", "value"):
        if len(text) <= DESCRIPTION_BUDGET:
            break
        for entry in description["variables"]:
            entry.pop(field, None)
        text = json.dumps(description, ensure_ascii=True)
    with open(os.path.join(STATE_DIR, "state.json"), "w", encoding="utf-8") as out:
        out.write(text)


def pickle_all(namespace, loaded, step, cap):
    saved, skipped, imports, total = [], [], [], 0
    path = os.path.join(STATE_DIR, "state.pkl")
    too_large = None
    with open(path, "wb") as sink:
        for name, value in list(namespace.items()):
            if name in ("__builtins__",) or (name.startswith("__") and name.endswith("__")):
                continue
            again = import_path(value) if not name.startswith("_") and IDENTIFIER.match(name) else None
            if again is not None:
                data = again.encode("utf-8")
                digest = hashlib.sha256(data).hexdigest()
                set_by = loaded[name][0] if name in loaded and loaded[name][1] == digest else ""
                pickle.dump((name, set_by, again, "import"), sink, protocol=pickle.HIGHEST_PROTOCOL)
                imports.append({"name": name, "of": again})
                continue
            why = skip_reason(name, value)
            if why is None:
                try:
                    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
                except Exception as err:
                    why = f"cannot be saved ({type(err).__name__}: {str(err)[:120]})"
                else:
                    # A function or class the script defined, held inside a list or dict,
                    # cannot be loaded by the next script.
                    if b"__main__" in data:
                        why = "it holds a function, class or object the script defined: keep plain data instead"
            if why is None and len(saved) >= MAX_VARIABLES:
                why = f"more than {MAX_VARIABLES} variables: keep the ones later steps need"
            if why is not None:
                if not name.startswith("_"):
                    skipped.append({"name": name, "type": type_name(value), "why": why})
                continue
            digest = hashlib.sha256(data).hexdigest()
            # A value passed through unchanged keeps the step that set it.
            set_by = loaded[name][0] if name in loaded and loaded[name][1] == digest else ""
            total += len(data)
            if cap and total > cap:
                too_large = {"bytes": total, "cap": cap, "largest": name, "largest_bytes": len(data)}
                break
            pickle.dump((name, set_by, data), sink, protocol=pickle.HIGHEST_PROTOCOL)
            entry = describe(name, value)
            entry["bytes"] = len(data)
            entry["set_by"] = set_by or step
            saved.append(entry)
    skipped = skipped[:MAX_VARIABLES]
    if too_large:
        os.remove(path)
        return {"format": 1, "too_large": too_large, "variables": [], "skipped": skipped}
    return {"format": 1, "bytes": total, "variables": saved, "skipped": skipped,
            "imports": imports[:MAX_VARIABLES]}


def cap(text, limit=TEXT_CAP):
    text = str(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def type_name(value):
    kind = type(value)
    module = kind.__module__ or ""
    if module == "builtins":
        return kind.__name__
    top = module.split(".")[0]
    return f"{top}.{kind.__name__}"


def describe(name, value):
    entry = {"name": name, "type": type_name(value)}
    try:
        import pandas as pd  # the image has it; imported only when a variable is saved
        import numpy as np
    except Exception:
        pd = np = None
    try:
        if pd is not None and isinstance(value, pd.DataFrame):
            entry["shape"] = list(value.shape)
            entry["columns"] = [
                [cap(c, 80), str(t)] for c, t in list(value.dtypes.items())[:MAX_COLUMNS]
            ]
            if not isinstance(value.index, pd.RangeIndex):
                entry["index"] = cap(f"{value.index.name or ''} ({value.index.dtype})", 80)
            entry["sample"] = cap(value.head(SAMPLE_ROWS).to_string(max_cols=12, max_colwidth=20), 600)
        elif pd is not None and isinstance(value, pd.Series):
            entry["shape"] = [len(value)]
            entry["dtype"] = str(value.dtype)
            if value.name is not None:
                entry["series_name"] = cap(value.name, 80)
            entry["sample"] = cap(value.head(5).to_string(), 400)
        elif np is not None and isinstance(value, np.ndarray):
            entry["shape"] = list(value.shape)
            entry["dtype"] = str(value.dtype)
            entry["sample"] = cap(np.array2string(value.ravel()[:8], threshold=8), 200)
        elif isinstance(value, (list, tuple, dict, set, frozenset)):
            entry["len"] = len(value)
            entry["value"] = cap(repr(value), 200)
        else:
            entry["value"] = cap(repr(value), 200)
    except Exception as err:
        entry["value"] = cap(f"(not described: {type(err).__name__})", 80)
    return entry


if __name__ == "__main__":
    status = main()
    flush()

    sys.exit(status)
