"""The experiments behind the documentation, not library API: the paper's claim on an exact-score mixture
(:mod:`.theory`), the mechanism map (:mod:`.mechanism`) and the speed measurements (:mod:`.speed`)."""
