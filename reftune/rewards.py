"""`from reftune.rewards import score_completions` is a contract users' code relies on (DESIGN.md); the reward lives in reftune.scoring.rewards."""
from reftune.scoring.rewards import CORRECT_REWARD, NO_ANSWER_REWARD, PARTIAL_REWARD, RewardFn, score_answer, score_completions  # noqa: F401,E501
