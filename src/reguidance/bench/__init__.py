"""The image benchmark: pinned protocol (tasks, ids, seeds), resumable runner, and reports."""
