"""Learning-rate policies: the factor applied to each group's base learning rate at an epoch.

Each is a pure function of the epoch, so the rate after a resume equals the uninterrupted run's.
"""
import bisect
from typing import Callable, Sequence

LrFactor = Callable[[int], float]


def multistep_factor(milestones: Sequence[int], gamma: float) -> LrFactor:
    """gamma ** (number of milestones <= epoch)."""
    ordered = sorted(milestones)
    return lambda epoch: gamma ** bisect.bisect_right(ordered, epoch)


def exponential_factor(gamma: float, step_size: int) -> LrFactor:
    """gamma ** (epoch / step_size): the rate falls by gamma every step_size epochs, smoothly."""
    return lambda epoch: gamma ** (epoch / step_size)


def linear_exponential_factor(milestone: int, start_gamma: float, gamma: float, step_size: int) -> LrFactor:
    """A linear ramp from start_gamma (epoch 0) to 1 (epoch `milestone`), then
    gamma ** ((epoch - milestone) / step_size)."""

    def factor(epoch: int) -> float:
        if epoch < milestone:
            weight_of_start = (milestone - epoch) / milestone
            return weight_of_start * start_gamma + (1 - weight_of_start)
        return gamma ** ((epoch - milestone) / step_size)

    return factor
