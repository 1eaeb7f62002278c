"""Public names of a package loaded on first use (PEP 562), so importing the package stays cheap.

    __getattr__, __dir__ = lazy_names(__name__, globals(), {"train": "greenlm.train.loop", ...})
    __getattr__, __dir__ = lazy_names(__name__, globals(), by_module({"greenlm.train.loop": "train evaluate"}))

A table value is a module ("greenlm.train.loop": the attribute of the same name) or "module:attribute".
"""


def by_module(names: dict[str, str]) -> dict[str, str]:
    """{module: "name name ..."} -> {name: module}: the table of a package whose names keep their own."""
    return {name: module for module, listed in names.items() for name in listed.split()}

import importlib


def lazy_names(package: str, namespace: dict, table: dict[str, str]):
    def __getattr__(name: str):
        if name not in table:
            raise AttributeError(f"module '{package}' has no attribute {name!r}")
        module, _, attribute = table[name].partition(":")
        value = getattr(importlib.import_module(module), attribute or name)
        namespace[name] = value  # later look-ups skip this function
        return value

    def __dir__():
        return sorted(set(namespace) | set(table))

    return __getattr__, __dir__
