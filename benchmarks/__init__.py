"""Speed, memory and accuracy measurements; results go to results/."""
