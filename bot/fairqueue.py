"""Queued jobs, taken round-robin between users: one user with three jobs waiting does not
make the next user wait for all three. A plain object with no I/O (the job manager owns it)."""

from __future__ import annotations

from collections import deque


class FairQueue:
    def __init__(self) -> None:
        self._queues: dict[int, deque[str]] = {}  # user → queued job ids, oldest first
        self._turns: deque[int] = deque()  # users with queued jobs, in round-robin order

    def push(self, user_id: int, job_id: str, *, front: bool = False) -> None:
        """Queue a job last in its user's line, or first (`front`: a job that goes back to
        the queue after its worker was lost keeps its turn)."""
        queue = self._queues.setdefault(user_id, deque())
        if front:
            queue.appendleft(job_id)
        else:
            queue.append(job_id)
        if user_id not in self._turns:
            if front:
                self._turns.appendleft(user_id)
            else:
                self._turns.append(user_id)

    def remove(self, user_id: int, job_id: str) -> bool:
        """Take a queued job out; False if it was not queued."""
        queue = self._queues.get(user_id)
        if queue is None or job_id not in queue:
            return False
        queue.remove(job_id)
        if not queue:
            del self._queues[user_id]
            self._turns.remove(user_id)
        return True

    def pop(self) -> str:
        """The next job to run (IndexError when nothing is queued)."""
        user_id = self._turns.popleft()
        queue = self._queues[user_id]
        job_id = queue.popleft()
        if queue:
            self._turns.append(user_id)
        else:
            del self._queues[user_id]
        return job_id

    def order(self) -> list[str]:
        """Queued jobs in the order they will start."""
        queues = [list(self._queues[user]) for user in self._turns]
        order: list[str] = []
        for depth in range(max(map(len, queues), default=0)):
            order += [queue[depth] for queue in queues if depth < len(queue)]
        return order

    def position(self, job_id: str) -> int | None:
        """1 = next to run, 2 = after that...; None when the job is not queued."""
        try:
            return self.order().index(job_id) + 1
        except ValueError:
            return None

    def queued(self, user_id: int) -> list[str]:
        """The user's queued jobs, oldest first."""
        return list(self._queues.get(user_id, ()))

    def __len__(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    def __bool__(self) -> bool:
        return bool(self._turns)
