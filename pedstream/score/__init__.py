"""Scoring of detectors against reference annotations (EC57 beat-by-beat QRS scoring)."""

from pedstream.score.qrs import EC57_EXCLUDE_S, EC57_WINDOW_S, BeatScore, MatchResult, match_beats, vf_episodes

__all__ = ["BeatScore", "MatchResult", "match_beats", "vf_episodes", "EC57_WINDOW_S", "EC57_EXCLUDE_S"]
