"""BuiltinDataBase: a generator's data is written once per settings, atomically, into the cache."""
import os

import pytest

from recon_trainer.data.builtin_data import BuiltinDataBase, write_folder_atomically


class CountingData(BuiltinDataBase):  # not registered: built directly
    size: int = 3
    writes = []

    def describe(self) -> str:
        return f"{self.size} numbers"

    def write(self, folder: str) -> None:
        CountingData.writes.append(folder)
        for i in range(self.size):
            with open(os.path.join(folder, f"{i}.txt"), "w") as f:
                f.write(str(i))


def test_written_once_per_settings_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RECON_TRAINER_CACHE", str(tmp_path))
    CountingData.writes.clear()
    first = CountingData().ensure_written()
    assert CountingData().ensure_written() == first and len(CountingData.writes) == 1
    assert sorted(os.listdir(first)) == ["0.txt", "1.txt", "2.txt"] and first.startswith(str(tmp_path))
    other = CountingData(size=2).ensure_written()
    assert other != first and len(CountingData.writes) == 2


def test_a_failed_write_leaves_no_folder(tmp_path):
    def failing(folder: str) -> None:
        open(os.path.join(folder, "half"), "w").close()
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_folder_atomically(str(tmp_path / "data"), failing)
    assert os.listdir(tmp_path) == []
