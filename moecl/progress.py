"""Progress bars over rounds, shared by the linear engine and the deep runs."""

from __future__ import annotations


def progress_bar(total: int, enabled: bool, initial: int = 0):
    """A tqdm bar over ``total`` rounds, starting at ``initial`` (a resumed run).

    ``tqdm.auto`` (a widget in notebooks) is imported only when the bar is shown:
    without ipywidgets it warns even for a disabled bar.
    """
    if enabled:
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm
    return tqdm(total=total, initial=initial, desc="rounds", unit="round", disable=not enabled)
