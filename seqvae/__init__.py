"""seqvae: learn, explore and use representations of users from their behaviour logs."""
