# Size budgets per image (data.budgets, from budgets.json): the compressed
# size of each platform (manifest + config + layers: what a pull transfers).
# A variant without its own budget has its image's.
package kiln.size

import rego.v1

budget := data.budgets[input.image]

budget := data.budgets[input.name] if not data.budgets[input.image]

deny contains {
	"msg": sprintf("%v bytes compressed, over the budget of %v bytes", [input.size.compressed, budget.compressed]),
	"field": "size.compressed",
} if {
	input.kind == "image"
	input.size.compressed > budget.compressed
}

warn contains {"msg": sprintf("no size budget is declared for %v (budgets.json)", [input.image]), "field": "size.compressed"} if {
	input.kind == "image"
	not budget
}
