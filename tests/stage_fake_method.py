"""A method for testing the stage shell: writes a tiny "model" file; counts its runs; can be told to stop midway."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from greenlm.stage import StageContext, StageOutput

CALLS: list[dict] = []


@dataclass(frozen=True)
class FakeConfig:
    value: int = 1  # what the "model" file holds
    stop_after_state: bool = False  # raise KeyboardInterrupt once the state file is written

    def to_dict(self) -> dict:
        return asdict(self)


def run(ctx: StageContext, config: FakeConfig) -> StageOutput:
    state = ctx.work_dir / "state.txt"
    resumed = state.is_file()
    CALLS.append({"resumed": resumed})
    with ctx.phase("work"):
        ctx.work_dir.mkdir(parents=True, exist_ok=True)
        state.write_text("half done")
    if config.stop_after_state and not resumed:
        raise KeyboardInterrupt
    ctx.note("fake method ran")
    return StageOutput(metrics={"splits": {"dev": {"accuracy": 0.5}}, "fake": {"resumed": resumed}},
                       write=lambda folder: (folder / "model.txt").write_text(str(config.value)))
