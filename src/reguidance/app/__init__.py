"""What a run on disk needs, above the library: candidate methods by name (:mod:`.methods`), one batch solved with
its variants (:mod:`.batch`), run folders and their identity (:mod:`.runs`), sharding (:mod:`.shard`), memory
checks (:mod:`.memory`), and the user-facing jobs: restoring files (:mod:`.restore`), sampling a prior
(:mod:`.sampling`) and training one (:mod:`.train`)."""
