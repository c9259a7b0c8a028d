"""MMLU's 57 subjects as task categories: the test split's size and prompt length per subject.

The issue's real data (several dozen categories of 100–1,500 prompts, >10k prompts) matches
MMLU's test split (14,042 questions). Sizes and bytes are the `test` split's `num_examples`
and `num_bytes` in the dataset card of `cais/mmlu` (Hugging Face, MIT licence); bytes per
question (question + four choices) give each subject's typical prompt length, from short
arithmetic to long reading passages in the history and law subjects.
"""

from __future__ import annotations

#: subject, test questions, test bytes
SUBJECTS: tuple[tuple[str, int, int], ...] = (
    ("abstract_algebra", 100, 19328), ("anatomy", 135, 33121), ("astronomy", 152, 46771),
    ("business_ethics", 100, 33252), ("clinical_knowledge", 265, 62754),
    ("college_biology", 144, 48797), ("college_chemistry", 100, 24708),
    ("college_computer_science", 100, 42641), ("college_mathematics", 100, 24711),
    ("college_medicine", 173, 82397), ("college_physics", 102, 30181),
    ("computer_security", 100, 27124), ("conceptual_physics", 235, 40709),
    ("econometrics", 114, 46547), ("electrical_engineering", 145, 25142),
    ("elementary_mathematics", 378, 70108), ("formal_logic", 126, 49785),
    ("global_facts", 100, 18403), ("high_school_biology", 310, 109732),
    ("high_school_chemistry", 203, 58464), ("high_school_computer_science", 100, 44476),
    ("high_school_european_history", 165, 270300), ("high_school_geography", 198, 42034),
    ("high_school_government_and_politics", 193, 66074),
    ("high_school_macroeconomics", 390, 117687), ("high_school_mathematics", 270, 54854),
    ("high_school_microeconomics", 238, 75703), ("high_school_physics", 151, 59538),
    ("high_school_psychology", 545, 159407), ("high_school_statistics", 216, 110702),
    ("high_school_us_history", 204, 296734), ("high_school_world_history", 237, 378617),
    ("human_aging", 223, 46098), ("human_sexuality", 131, 32110),
    ("international_law", 121, 53531), ("jurisprudence", 108, 33986),
    ("logical_fallacies", 163, 50117), ("machine_learning", 112, 33880),
    ("management", 103, 20002), ("marketing", 234, 63025), ("medical_genetics", 100, 20864),
    ("miscellaneous", 783, 147704), ("moral_disputes", 346, 107818),
    ("moral_scenarios", 895, 374026), ("nutrition", 306, 92410), ("philosophy", 311, 80073),
    ("prehistory", 324, 89594), ("professional_accounting", 282, 124550),
    ("professional_law", 1534, 1891762), ("professional_medicine", 272, 217561),
    ("professional_psychology", 612, 225899), ("public_relations", 110, 28760),
    ("security_studies", 245, 204844), ("sociology", 201, 66243),
    ("us_foreign_policy", 100, 28443), ("virology", 166, 38759), ("world_religions", 171, 25274),
)

#: Tokens of instruction around each question (zero-shot multiple choice).
INSTRUCTION_TOKENS = 30
BYTES_PER_TOKEN = 4.0


def catalog() -> tuple[tuple[str, int, float], ...]:
    """(subject, prompts, typical prompt tokens) per subject."""
    return tuple((name, n, INSTRUCTION_TOKENS + size / n / BYTES_PER_TOKEN)
                 for name, n, size in SUBJECTS)
