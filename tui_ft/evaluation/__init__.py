"""Evaluation of a trained model: loss and perplexity on the tokens training counts, greedy generations
scored against reference answers (exact match, contains, ROUGE-L, a user's own metric functions), the
same figures for the base model and a few-shot prompted base, and the forgetting check on general text.

`suite.evaluate` runs one evaluation; `store` keeps the results with the run (`runs/<id>/eval/`) and
turns them into the table the command line and the Runs dashboard show. Light at import: torch and the
training stack are imported inside the functions that use them.
"""
