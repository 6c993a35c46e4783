-- Argo CD health of an InContextCache (iccache.dev/v1alpha1), from the conditions the
-- operator writes: Healthy when Ready, Degraded when Stalled (a wrong spec or a missing
-- Secret or claim: waiting will not fix it), Progressing otherwise, and while the
-- operator has not yet seen the latest spec.
local hs = { status = "Progressing", message = "waiting for the operator" }
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.message = "waiting for the operator to see generation " .. generation
  return hs
end
for _, condition in ipairs(obj.status.conditions) do
  if condition.type == "Stalled" and condition.status == "True" then
    return { status = "Degraded", message = condition.message }
  end
end
for _, condition in ipairs(obj.status.conditions) do
  if condition.type == "Ready" then
    if condition.status == "True" then
      return { status = "Healthy", message = condition.message }
    end
    hs.message = condition.message
  end
end
return hs
