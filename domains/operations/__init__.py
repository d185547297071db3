"""Operations on entity keys and the conflicts between them (seed 002): an agent says it is working on an email,
a customer, an order (`events`), and another agent registering an operation on the same key inside the conflict
window is answered with the one already under way (`conflicts`)."""
